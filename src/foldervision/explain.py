"""What a trained classifier looked at: heatmaps of the predicted class, over the image.

The maps are Grad-CAM's family (Selvaraju et al., 2017) in its element-wise form, LayerCAM
(Jiang et al., 2021): each cell of a feature map counts its activations weighted by the positive
part of the class score's gradient at that cell, summed over channels. Grad-CAM proper weighs a
channel by its gradient's mean over the whole map, which suits only a map that is mean-pooled
straight into the head. Why the change: on flowers5 photos pasted into one quadrant of a grey
canvas, the element-wise maps peaked in the photo's quadrant far more often, for the trained
model and for the probe's pooled maps alike (benchmarks/explain_localisation.py;
docs/benchmarks.md). It works from the saved model.keras of any run (LeNet, MobileNetV2, the
photo recipe's probe ensemble).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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

EXPLAIN_BATCH = 4
"""Images per gradient pass: the tape keeps every activation of the batch (a probe ensemble's
three backbones at 260 px), so memory grows with it. `predict --explain` on 32 flowers5 photos
with a default photo run: 8 a batch 4.6 GB and 22 s, 4 a batch 2.8 GB and 29 s, 2 a batch
1.9 GB and 38 s (docs/benchmarks.md)."""


@dataclass
class Explanation:
    """The predicted class of one image and where its evidence was (values in [0, 1])."""

    label: int
    confidence: float
    heatmap: np.ndarray
    """(side, side) float32, the class map upsampled to the pixels explained."""


def class_activation(feature_map: Any, gradients: Any) -> Any:
    """LayerCAM: (batch, height, width) evidence for the class whose score gave `gradients`."""
    import tensorflow as tf

    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * feature_map, axis=-1))


class GradCam:
    """Class maps of a classifier: its last spatial feature map and the logits of its softmax
    head; for a probe ensemble, also the maps its frozen embedding pools (`ProbeMaps`).

    A nested pretrained backbone (MobileNetV2) is entered: its map is read inside it and the
    layers after it are applied by hand, so the gradient flows from the logits to that map.
    """

    def __init__(self, model: Any) -> None:
        import keras

        from foldervision.models.classifier import trained_part, without_flip_average

        # A probe ensemble predicts from both halves, so both draw a map of the class it
        # predicts (the class `predict` prints); the trained half on the photo's own pass.
        self.ensemble = model if trained_part(model) is not model else None
        self.probe = ProbeMaps(model) if self.ensemble is not None else None
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
        logits, maps = self.trained_maps(inputs, predicted)
        if predicted is None:
            predicted = tf.argmax(logits, axis=1)
            probabilities = tf.nn.softmax(logits).numpy()
        if self.probe is not None:  # the ensemble's two halves weigh the same
            maps = (_peak_one(maps) + _peak_one(self.probe(inputs, predicted))) / 2
        return [
            Explanation(
                label=int(predicted[index]),
                confidence=float(probabilities[index, int(predicted[index])]),
                heatmap=heatmap,
            )
            for index, heatmap in enumerate(_peak_one(maps))
        ]

    def trained_maps(self, inputs: Any, predicted: Any) -> tuple[Any, np.ndarray]:
        """The trained model's logits, and its maps of `predicted` (of its own choice when
        None) at the side of `inputs`."""
        import tensorflow as tf

        side = int(inputs.shape[1])
        if side != self.input_side:  # an ensemble's pixels, as its graph resizes them
            inputs = tf.image.resize(inputs, (self.input_side, self.input_side))
        with tf.GradientTape() as tape:
            feature_map, x = self.mapping(inputs, training=False)
            for layer in self.after:
                x = layer(x, training=False)
            logits = tf.matmul(x, self.final.kernel) + self.final.bias
            chosen_class = tf.argmax(logits, axis=1) if predicted is None else predicted
            chosen = tf.gather(logits, chosen_class, axis=1, batch_dims=1)
        maps = class_activation(feature_map, tape.gradient(chosen, feature_map))
        return logits, _resized(maps, side)


class ProbeMaps:
    """The probe half of an ensemble: maps of the probe's class score over every feature map its
    frozen embedding pools (each backbone, each scale), upsampled to the image and summed.

    The embedding is one saved graph with the backbones nested in it, so their maps are read
    by recording what those nested models return while the tape watches the pixels.
    """

    def __init__(self, ensemble: Any) -> None:
        from foldervision.models.classifier import EMBEDDING_LAYER, PROBE_LAYER

        self.embedding = ensemble.get_layer(EMBEDDING_LAYER)
        self.probe = ensemble.get_layer(PROBE_LAYER)
        self.map_models = pooled_map_models(self.embedding)
        if not self.map_models:
            raise FoldervisionError(f"{self.embedding.name}: no feature map to explain.")

    def __call__(self, pixels: Any, predicted: Any) -> np.ndarray:
        """(batch, side, side) maps of the classes `predicted`, at the pixels' side."""
        import tensorflow as tf

        with recorded_outputs(self.map_models) as recorded, tf.GradientTape() as tape:
            tape.watch(pixels)
            vectors = self.embedding(pixels, training=False)
            logits = tf.matmul(vectors, self.probe.kernel) + self.probe.bias
            chosen = tf.gather(logits, predicted, axis=1, batch_dims=1)
        if any(len(outputs) != 1 for outputs in recorded):
            raise FoldervisionError(
                f"{self.embedding.name}: a backbone runs more than once per image (flip "
                "averaging); its maps are not explained."
            )
        feature_maps = [outputs[0] for outputs in recorded]
        gradients = tape.gradient(chosen, feature_maps)
        side = int(pixels.shape[1])
        return sum(
            _resized(class_activation(feature_map, gradient), side)
            for feature_map, gradient in zip(feature_maps, gradients)
        )


def pooled_map_models(model: Any) -> list[Any]:
    """The innermost nested models whose output is one feature map (batch, height, width,
    channels): the backbones, cut at the layer a retrieval embedding pools."""
    import keras

    found = []
    for layer in model.layers:
        if not isinstance(layer, keras.Model):
            continue
        inner = [nested for nested in layer.layers if isinstance(nested, keras.Model)]
        output = layer.output
        if not inner and not isinstance(output, list | tuple) and len(output.shape) == 4:
            found.append(layer)
        else:
            found += pooled_map_models(layer)
    return found


@contextmanager
def recorded_outputs(models: list[Any]) -> Iterator[list[list[Any]]]:
    """While inside, what each of `models` returns is appended to its list (Keras has no
    forward hooks; the models' own `call` is wrapped and put back after)."""
    recorded: list[list[Any]] = [[] for _ in models]
    for model, outputs in zip(models, recorded):

        def recording_call(*args: Any, _call: Any = model.call, _outputs: list = outputs, **kwargs):
            output = _call(*args, **kwargs)
            _outputs.append(output)
            return output

        model.call = recording_call
    try:
        yield recorded
    finally:
        for model in models:
            del model.call  # the class's own method again


def _resized(maps: Any, side: int) -> np.ndarray:
    """(batch, h, w) maps upsampled (bilinear) to (batch, side, side), as numpy."""
    import tensorflow as tf

    return tf.image.resize(maps[..., None], (side, side), method="bilinear")[..., 0].numpy()


def _peak_one(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its peak (an all-zero map stays zero), float32."""
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1), maps).astype(np.float32)


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
    for start in range(0, len(images), EXPLAIN_BATCH):
        loaded = preprocessor.load(images[start : start + EXPLAIN_BATCH])
        if not loaded.paths:
            continue
        for path, pixels, explanation in zip(loaded.paths, loaded.pixels, cam(loaded.pixels)):
            target = free_file(out / f"{Path(path).stem}_gradcam.png")
            save_image_atomic(overlay(pixels, explanation.heatmap), target)
            written[str(path)] = str(target)
    return written
