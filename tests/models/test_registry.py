"""Every registered model builds with the promised interface (no downloads: random weights)."""

from __future__ import annotations

import numpy as np
import pytest

from foldervision.images import channels_for
from foldervision.models import RANDOM_INITIALISATION, available_models, get_model_entry


@pytest.mark.parametrize("name", available_models())
def test_model_builds_with_raw_pixel_input_and_named_layers(name):
    entry = get_model_entry(name)
    size = 32 if entry.pretrained else entry.default_image_size
    weights = "none" if entry.pretrained else None
    built = entry.build(num_classes=3, image_size=size, weights=weights)
    model = built.model
    channels = channels_for(entry.color_mode)
    assert model.input_shape == (None, size, size, channels)
    assert model.output_shape == (None, 3)
    assert entry.feature_layer == "features"
    assert model.get_layer(entry.feature_layer).output.shape[-1] > 0
    assert built.weights_description == RANDOM_INITIALISATION
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, channels)).astype("float32")
    probabilities = np.asarray(model(pixels, training=False))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_lenet_shapes():
    model = get_model_entry("lenet").build(num_classes=3).model
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["conv_1"] == (28, 28, 6)
    assert shapes["pool_1"] == (14, 14, 6)
    assert shapes["conv_2"] == (10, 10, 16)
    assert shapes["pool_2"] == (5, 5, 16)
    assert shapes["dense_120"] == (120,)
    assert shapes["features"] == (84,)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="lenet"):
        get_model_entry("resnet9000")


def test_lenet_trains_every_layer_in_every_phase():
    entry = get_model_entry("lenet")
    model = entry.build(num_classes=3).model
    model.trainable = False
    entry.set_trainable(model, "all")
    assert len(model.trainable_weights) == len(model.weights)
