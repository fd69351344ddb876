"""LeNet-5 (LeCun et al., 1998), in its common modern form: ReLU, max pooling, softmax head."""

from __future__ import annotations

import keras
from keras import layers

from foldervision.models import RANDOM_INITIALISATION, BuiltModel


def build_lenet(
    num_classes: int, image_size: int = 28, channels: int = 1, weights: str | None = None
) -> BuiltModel:
    """Two conv + pool stages, then dense 120 -> 84 -> classes.

    The input is raw pixels in [0, 255]; scaling to [0, 1] happens inside the graph so that
    whoever calls the model (training, predict, an exported TFLite file) feeds the same thing.
    """
    if weights not in (None, "none"):
        raise ValueError("LeNet is trained from scratch; it takes no pretrained --weights.")
    if image_size < 12:
        raise ValueError(f"--image-size {image_size} is too small for LeNet; use 28 or more.")
    inputs = keras.Input(shape=(image_size, image_size, channels), name="pixels")
    x = layers.Rescaling(1.0 / 255, name="scale_to_unit")(inputs)
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv_1")(x)
    x = layers.MaxPooling2D(2, name="pool_1")(x)
    x = layers.Conv2D(16, 5, padding="valid", activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D(2, name="pool_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="dense_120")(x)
    x = layers.Dense(84, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return BuiltModel(keras.Model(inputs, outputs, name="lenet"), RANDOM_INITIALISATION)


def set_trainable(model: keras.Model, trainable: str) -> None:
    """LeNet has no pretrained part to protect: every phase trains every layer."""
    model.trainable = True
