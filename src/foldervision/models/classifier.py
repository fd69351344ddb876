"""Pretrained-backbone classifiers (MobileNetV2, EfficientNet-Lite): the backbone, kept apart
from the task head. Both backbones name block i's layers "block_{i}_...", so one freeze hook
serves them."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from foldervision.models import BuiltModel
from foldervision.models.mobilenetv2 import block_index
from foldervision.models.mobilenetv2_weights import describe_weights


def build_pretrained_classifier(
    backbone_name: str,
    num_classes: int,
    image_size: int = 64,
    channels: int = 3,
    weights: str | None = "auto",
    dropout: float = 0.2,
) -> BuiltModel:
    """Pretrained backbone (called with training=False so BatchNorm statistics stay put), then a
    new dropout + softmax head. Input: raw RGB pixels in [0, 255]."""
    from foldervision.models.pretrained import get_pretrained

    backbone_entry = get_pretrained(backbone_name)
    title = backbone_entry.title
    if channels != 3:
        raise ValueError(f"{title} takes RGB input; grayscale images are converted to RGB.")
    if image_size < 32:
        raise ValueError(f"--image-size {image_size} is too small for {title}; use 32 or more.")
    resolved = backbone_entry.resolve(weights or None)
    backbone = backbone_entry.build(image_size, resolved)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    pooled = backbone(inputs, training=False)
    features = layers.Identity(name="features")(pooled)
    x = layers.Dropout(dropout, name="head_dropout")(features)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    name = f"{backbone_name.replace('-', '_')}_classifier"
    return BuiltModel(keras.Model(inputs, outputs, name=name), describe_weights(resolved))


FLIP_AVERAGE_LAYER = "flip_average"


@keras.saving.register_keras_serializable(package="foldervision")
class Mirror(keras.layers.Layer):
    """The image mirrored left to right: the second view of flip averaging."""

    def call(self, pixels: keras.KerasTensor) -> keras.KerasTensor:
        return keras.ops.flip(pixels, axis=2)


def with_flip_average(model: keras.Model) -> keras.Model:
    """The classifier predicting from the mean of the backbone's features of an image and of
    its mirror: under a linear head, the mean of the two views' logits. Shares `model`'s
    weights. Why: on flowers5 at 64 photos per class it raised held-out accuracy on most
    calibration runs (benchmarks/photo_training_variants.py)."""
    backbone = find_backbone(model)
    if backbone is None:
        raise ValueError(f"{model.name}: flip averaging needs a pretrained backbone.")
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    plain = backbone(inputs, training=False)
    mirrored = backbone(Mirror(name="mirror")(inputs), training=False)
    averaged = layers.Average(name=FLIP_AVERAGE_LAYER)([plain, mirrored])
    return _with_head_after(model, model.layers.index(backbone), inputs, averaged)


def without_flip_average(model: keras.Model) -> keras.Model:
    """The one-view classifier inside a flip-averaged one (sharing its weights), for what
    reads a single pass (Grad-CAM); any other model as it is."""
    names = [layer.name for layer in model.layers]
    if FLIP_AVERAGE_LAYER not in names:
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    features = find_backbone(model)(inputs, training=False)
    return _with_head_after(model, names.index(FLIP_AVERAGE_LAYER), inputs, features)


ENSEMBLE_LAYER = "ensemble"
"""The layer averaging a trained model's and a probe's probabilities (`with_probe`)."""

TRAINED_MODEL_LAYER = "trained_model"
"""The trained classifier inside an ensemble, as a nested model."""

PROBE_LAYER = "probe"

EMBEDDING_LAYER = "frozen_embedding"
"""The frozen retrieval embedding inside an ensemble, whose vectors the probe reads."""


def with_probe(
    trained: keras.Model, embedding: keras.Model, kernel: np.ndarray, bias: np.ndarray
) -> keras.Model:
    """One graph: pixels at `embedding`'s input size -> the mean of `trained`'s class
    probabilities (its pixels resized in the graph to its own size) and a softmax probe's
    (`kernel`, `bias`) on `embedding`'s vectors (`training.ensemble`)."""
    size = int(embedding.input_shape[1])
    trained_size = int(trained.input_shape[1])
    name = trained.name
    pixels = keras.Input((size, size, 3), name="pixels")
    resized = pixels
    if trained_size != size:
        resized = keras.ops.image.resize(pixels, (trained_size, trained_size))
    trained.name = TRAINED_MODEL_LAYER
    embedding.name = EMBEDDING_LAYER
    embedding.trainable = False
    dense = layers.Dense(kernel.shape[1], activation="softmax", name=PROBE_LAYER)
    probe_probabilities = dense(embedding(pixels))
    dense.set_weights([kernel, bias])
    averaged = layers.Average(name=ENSEMBLE_LAYER)([trained(resized), probe_probabilities])
    return keras.Model(pixels, averaged, name=f"{name}_probe_ensemble")


def trained_part(model: keras.Model) -> keras.Model:
    """The trained classifier inside a `with_probe` ensemble (what Grad-CAM and a classifier's
    features read); any other model as it is."""
    if ENSEMBLE_LAYER not in [layer.name for layer in model.layers]:
        return model
    return model.get_layer(TRAINED_MODEL_LAYER)


def _with_head_after(
    model: keras.Model, position: int, inputs: keras.KerasTensor, features: keras.KerasTensor
) -> keras.Model:
    """A model from `inputs` whose `features` go through `model`'s layers after `position`
    (its head, weights shared)."""
    outputs = features
    for layer in model.layers[position + 1 :]:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name=model.name)


def find_backbone(model: keras.Model) -> keras.Model | None:
    """The nested pretrained model, if this classifier has one."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else None


def set_trainable(model: keras.Model, trainable: str) -> None:
    """Choose what learns: "all", "head" (backbone frozen) or "top:N" (last N backbone blocks).

    Every backbone layer is set explicitly: in Keras 3 making the outer model trainable does
    not undo an earlier `backbone.trainable = False`.
    """
    model.trainable = True
    backbone = find_backbone(model)
    if backbone is None:
        return
    backbone.trainable = trainable != "head"
    if trainable in ("all", "head"):
        for layer in backbone.layers:
            layer.trainable = trainable == "all"
        return
    if not trainable.startswith("top:"):
        raise ValueError(f"Unknown trainable setting {trainable!r}; use all, head or top:N.")
    first_trainable = _first_trainable_block(backbone, int(trainable.split(":", 1)[1]))
    seen_first_trainable_block = False
    for layer in backbone.layers:
        block = block_index(layer.name)
        if block is not None and block >= first_trainable:
            seen_first_trainable_block = True
        layer.trainable = seen_first_trainable_block


def _first_trainable_block(backbone: keras.Model, block_count: int) -> int:
    block_numbers = [
        block for layer in backbone.layers if (block := block_index(layer.name)) is not None
    ]
    return max(block_numbers) - block_count + 1
