"""Tests for the torchvision-layout MobileNetV2 network: layers, padding, preprocessing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from foldervision.models.mobilenetv2 import (
    BATCH_NORM_EPSILON,
    BLOCK_COUNT,
    IMAGENET_MEAN,
    MOBILENETV2_FEATURE_DIM,
    block_index,
    build_mobilenetv2,
    without_top,
)

# --------------------------------------------------------------------------------------------
# Architecture (pretrained weights: test_mobilenetv2_weights.py).


@pytest.fixture(scope="module")
def random_model() -> keras.Model:
    return build_mobilenetv2(96)


def test_random_init_shapes_and_names(random_model):
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


def test_block_index_names_the_inverted_residual_block(random_model):
    assert block_index("block_16_project_BN") == 16
    assert block_index("block_0_depthwise") == 0
    assert block_index("Conv1") is None and block_index("predictions") is None
    indices = {block_index(layer.name) for layer in random_model.layers} - {None}
    assert indices == set(range(BLOCK_COUNT))


def test_without_top_ends_at_the_pooled_features_of_the_same_layers(random_model):
    headless = without_top(random_model)
    assert headless.output.shape == (None, MOBILENETV2_FEATURE_DIM)
    assert headless.get_layer("Conv1") is random_model.get_layer("Conv1")
