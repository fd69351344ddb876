"""Tests for foldervision.models.mobilenetv2_weights: where the weights come from, the
torchvision -> Keras conversion, and an ImageNet sanity check of the converted network."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data
from keras.src.utils import file_utils
from PIL import Image

from foldervision.cache import sha256_of, verify_sha256
from foldervision.errors import WeightsError
from foldervision.models import RANDOM_INITIALISATION, mobilenetv2_weights
from foldervision.models.mobilenetv2 import MOBILENETV2_FEATURE_DIM, build_mobilenetv2
from foldervision.models.mobilenetv2_weights import (
    CACHED_WEIGHTS_NAME,
    INSTALL_COMMAND,
    PACKAGED_CHECKPOINT_SHA256,
    REINSTALL_HINT,
    ResolvedWeights,
    WeightsUnavailableError,
    assign_layer_weights,
    build_mobilenetv2_backbone,
    convert_torch_state_dict,
    describe_weights,
    load_mobilenetv2_weights,
    packaged_checkpoint_path,
    resolve_mobilenetv2_weights,
    torch_layer_names,
)
from foldervision.torch_checkpoint import CorruptCheckpointError, read_torch_checkpoint

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
def checkpoint() -> Path:
    path = packaged_checkpoint_path()
    if path is None:
        pytest.fail(f"weights package missing; run: {INSTALL_COMMAND}")
    return path


@pytest.fixture(scope="module")
def imagenet_weights(cache_folder) -> ResolvedWeights:
    """Resolved first in an empty cache, so converted from the weights package."""
    return resolve_mobilenetv2_weights("auto")


@pytest.fixture(scope="module")
def imagenet_model(imagenet_weights) -> keras.Model:
    return build_mobilenetv2_backbone(224, weights=imagenet_weights, include_top=True)


@pytest.fixture(scope="module")
def state_dict(checkpoint) -> dict[str, np.ndarray]:
    return read_torch_checkpoint(checkpoint)


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


def test_first_resolution_converts_the_package_and_says_so(imagenet_weights, cache_folder):
    assert imagenet_weights.source == "package"
    assert imagenet_weights.path == cache_folder / CACHED_WEIGHTS_NAME
    assert "IMAGENET1K_V1" in imagenet_weights.description
    assert describe_weights(imagenet_weights) == imagenet_weights.description
    assert describe_weights(None) == RANDOM_INITIALISATION


def test_backbone_outputs_the_pooled_features_of_the_same_network(imagenet_model):
    assert resolve_mobilenetv2_weights("auto").source == "cache"
    backbone = build_mobilenetv2_backbone(224, include_top=False)
    pixels = photo("chelsea")[np.newaxis]

    features = backbone.predict(pixels, verbose=0)
    pooled = keras.Model(imagenet_model.input, imagenet_model.get_layer("pooled").output)

    assert backbone.output.shape == (None, MOBILENETV2_FEATURE_DIM)
    assert backbone.layers[-1].name == "pooled"
    np.testing.assert_allclose(features, pooled.predict(pixels, verbose=0), rtol=1e-4, atol=1e-4)


def test_weights_load_into_other_image_sizes(imagenet_weights):
    model = build_mobilenetv2_backbone(160, weights=imagenet_weights, include_top=False)
    features = model.predict(np.full((1, 160, 160, 3), 128.0, "float32"), verbose=0)

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


@pytest.fixture(scope="module")
def random_model() -> keras.Model:
    return build_mobilenetv2(96)


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
    monkeypatch.setattr(mobilenetv2_weights, "packaged_checkpoint_path", lambda: None)

    with pytest.raises(WeightsUnavailableError) as caught:
        build_mobilenetv2_backbone(96, weights=choice.split("-with")[0])

    message = str(caught.value)
    assert "\n" not in message
    assert INSTALL_COMMAND in message
    assert "--weights PATH" in message
    assert "name resolution" in message


# --------------------------------------------------------------------------------------------
# The packaged checkpoint's hash.


def test_packaged_checkpoint_has_the_known_hash(checkpoint):
    assert sha256_of(checkpoint) == PACKAGED_CHECKPOINT_SHA256
    verify_sha256(checkpoint, PACKAGED_CHECKPOINT_SHA256, remedy=REINSTALL_HINT)


def test_corrupted_checkpoint_is_refused(tmp_path, checkpoint, monkeypatch):
    corrupted = tmp_path / checkpoint.name
    shutil.copyfile(checkpoint, corrupted)
    with open(corrupted, "r+b") as file:
        file.seek(5_000_000)
        byte = file.read(1)
        file.seek(5_000_000)
        file.write(bytes([byte[0] ^ 0xFF]))

    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mobilenetv2_weights, "packaged_checkpoint_path", lambda: corrupted)
    with pytest.raises(CorruptCheckpointError, match="corrupt") as caught:
        resolve_mobilenetv2_weights("auto")
    assert corrupted.name in str(caught.value)
    assert INSTALL_COMMAND in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "cache" / CACHED_WEIGHTS_NAME).exists()


# --------------------------------------------------------------------------------------------
# Resolution order and cache.


def test_package_is_converted_once_then_cache_is_reused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FOLDERVISION_CACHE", str(cache))

    first = resolve_mobilenetv2_weights("auto")

    assert first.source == "package"
    assert first.path == cache / CACHED_WEIGHTS_NAME
    assert sorted(path.name for path in cache.iterdir()) == [CACHED_WEIGHTS_NAME]

    def fail_if_converted(*arguments, **keywords):
        raise AssertionError("the cached file should have been reused")

    monkeypatch.setattr(mobilenetv2_weights, "convert_checkpoint_to_keras", fail_if_converted)
    second = resolve_mobilenetv2_weights("auto")

    assert second.source == "cache"
    assert second.path == first.path
    assert "cached" in second.description


def test_interrupted_conversion_leaves_no_file(tmp_path, monkeypatch, checkpoint):
    destination = tmp_path / "cache" / CACHED_WEIGHTS_NAME

    def save_half_then_crash(model, path, *arguments, **keywords):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save_weights", save_half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        mobilenetv2_weights.convert_checkpoint_to_keras(checkpoint, destination)

    assert list(destination.parent.iterdir()) == []


def test_explicit_paths(tmp_path, monkeypatch, checkpoint):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "cache"))
    keras_file = tmp_path / "mine.weights.h5"
    keras_file.write_bytes(b"")
    assert resolve_mobilenetv2_weights(keras_file).source == "explicit"

    converted = resolve_mobilenetv2_weights(str(checkpoint))
    assert converted.source == "explicit-torch"
    assert converted.path.is_file()
    assert converted.path.parent == tmp_path / "cache"

    with pytest.raises(WeightsError, match="absent.weights.h5: weights file not found"):
        resolve_mobilenetv2_weights(tmp_path / "absent.weights.h5")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(WeightsError, match="unknown weights format"):
        resolve_mobilenetv2_weights(notes)


def test_keywords():
    assert resolve_mobilenetv2_weights(None) is None
    assert resolve_mobilenetv2_weights("none") is None
    assert resolve_mobilenetv2_weights("keras-imagenet").source == "keras-imagenet"


def test_auto_falls_back_to_keras_when_nothing_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path))
    monkeypatch.setattr(mobilenetv2_weights, "packaged_checkpoint_path", lambda: None)
    assert resolve_mobilenetv2_weights("auto").source == "keras-imagenet"
