"""What a trained classifier looked at: Grad-CAM heatmaps of the predicted class, over the image.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the last convolutional feature map by
the mean gradient of the class score over it; the weighted sum, kept where positive, says which
places raised that class. It works from the saved model.keras of any run (LeNet, MobileNetV2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.errors import FoldervisionError
from foldervision.images import is_image_file, save_image_atomic
from foldervision.models.saving import load_classifier

MIN_MAP_SIDE = 4
"""The feature map explained is the last one at least this many cells a side: MobileNetV2's
last map is 1x1 at 32 px and 2x2 at 64 px, which cannot say where anything is."""

SHOWN_SIDE = 224
"""Explanations are drawn at least this many pixels a side (a 28-px digit is too small to see)."""

HEATMAP_OPACITY = 0.45


@dataclass
class Explanation:
    """The predicted class of one image and where its evidence was (values in [0, 1])."""

    label: int
    confidence: float
    heatmap: np.ndarray
    """(image_size, image_size) float32, the class map upsampled to the model's input."""


class GradCam:
    """Grad-CAM of a classifier: its last spatial feature map and the logits of its softmax head.

    A nested pretrained backbone (MobileNetV2) is entered: its map is read inside it and the
    layers after it are applied by hand, so the gradient flows from the logits to that map.
    """

    def __init__(self, model: Any) -> None:
        import keras

        from foldervision.models.classifier import trained_part, without_flip_average

        # A probe ensemble is explained by its trained model's map (the probe's frozen vectors
        # have no map of their own), for the class the ensemble predicts, which is the class
        # `predict` prints; a flip-averaged model on the photo's own pass.
        self.ensemble = model if trained_part(model) is not model else None
        model = without_flip_average(trained_part(model))
        self.input_side = int(model.input_shape[1])
        nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        self.final = model.layers[-1]
        if not isinstance(self.final, keras.layers.Dense):
            raise FoldervisionError(
                f"{model.name}: its last layer is not a dense softmax head; Grad-CAM needs one."
            )
        if nested:
            inner = nested[0]
            position = model.layers.index(inner)
            before = model.layers[:position]
            if any(not isinstance(layer, keras.layers.InputLayer) for layer in before):
                raise FoldervisionError(f"{model.name}: layers before its backbone; not explained.")
            self.after = model.layers[position + 1 : -1]
            scores = inner.outputs[0]
        else:
            inner, self.after = model, []
            scores = self.final.input
        self.layer = last_spatial_layer(inner)
        self.mapping = keras.Model(inner.inputs, [self.layer.output, scores])

    def __call__(self, pixels: np.ndarray) -> list[Explanation]:
        """Heatmaps of the predicted class for a batch of pixels (as the model takes them)."""
        import tensorflow as tf

        inputs = tf.convert_to_tensor(pixels, dtype=tf.float32)
        predicted = probabilities = None
        if self.ensemble is not None:
            probabilities = np.asarray(self.ensemble(inputs, training=False))
            predicted = tf.constant(probabilities.argmax(axis=1))
        if inputs.shape[1] != self.input_side:  # an ensemble's pixels, as its graph resizes them
            inputs = tf.image.resize(inputs, (self.input_side, self.input_side))
        with tf.GradientTape() as tape:
            feature_map, x = self.mapping(inputs, training=False)
            for layer in self.after:
                x = layer(x, training=False)
            logits = tf.matmul(x, self.final.kernel) + self.final.bias
            if predicted is None:
                predicted = tf.argmax(logits, axis=1)
            chosen = tf.gather(logits, predicted, axis=1, batch_dims=1)
        gradients = tape.gradient(chosen, feature_map)
        channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        maps = tf.nn.relu(tf.reduce_sum(channel_weights * feature_map, axis=-1))[..., None]
        side = int(pixels.shape[1])
        maps = tf.image.resize(maps, (side, side), method="bilinear")[..., 0].numpy()
        if probabilities is None:
            probabilities = tf.nn.softmax(logits).numpy()
        explanations = []
        for index, heatmap in enumerate(maps):
            peak = float(heatmap.max())
            label = int(predicted[index])
            explanations.append(
                Explanation(
                    label=label,
                    confidence=float(probabilities[index, label]),
                    heatmap=(heatmap / peak if peak > 0 else heatmap).astype(np.float32),
                )
            )
        return explanations


def last_spatial_layer(model: Any) -> Any:
    """The last layer whose output is a feature map (batch, height, width, channels) at least
    MIN_MAP_SIDE a side, pooling layers aside (they only shrink the map before them)."""
    import keras

    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4 or isinstance(layer, pooling):
            continue
        if min(shape[1], shape[2]) >= MIN_MAP_SIDE:
            return layer
    raise FoldervisionError(
        f"{model.name}: no feature map of {MIN_MAP_SIDE}x{MIN_MAP_SIDE} or more to explain; "
        "train it at a larger --image-size."
    )


def overlay(pixels: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The image (grey or RGB uint8) with the heatmap in the jet colours over it, RGB uint8,
    drawn at least SHOWN_SIDE a side."""
    from matplotlib import colormaps
    from PIL import Image

    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    side = max(SHOWN_SIDE, rgb.shape[0])
    image = np.asarray(Image.fromarray(rgb.astype(np.uint8)).resize((side, side)), np.float32)
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize((side, side)))
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    blended = (1 - HEATMAP_OPACITY) * image + HEATMAP_OPACITY * colours
    return np.clip(blended, 0, 255).astype(np.uint8)


def free_file(path: Path) -> Path:
    """`path`, or `name-2.png`, `name-3.png`, ...: the first that does not exist, so that no
    earlier explanation (or a user's file) is overwritten."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def explain_files(
    run: str | os.PathLike, paths: list[Path], out_dir: str | os.PathLike
) -> dict[str, str]:
    """Write `<name>_gradcam.png` into `out_dir` for each readable image: the image with the
    heatmap of its predicted class. Returns image path -> the file written."""
    model, preprocessor = load_classifier(run)
    cam = GradCam(model)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FoldervisionError(f"{out}: exists and is not a folder; give --explain a folder.")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    images = [path for path in paths if is_image_file(path)]
    for start in range(0, len(images), 32):
        loaded = preprocessor.load(images[start : start + 32])
        if not loaded.paths:
            continue
        for path, pixels, explanation in zip(loaded.paths, loaded.pixels, cam(loaded.pixels)):
            target = free_file(out / f"{Path(path).stem}_gradcam.png")
            save_image_atomic(overlay(pixels, explanation.heatmap), target)
            written[str(path)] = str(target)
    return written
