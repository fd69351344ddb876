"""A trained classifier is one `.keras` file that also carries its class names and preprocessing.

Keras' own archive is a zip; we add a `foldervision.json` entry beside Keras' files, so the
model, its class order and the way images must be fed to it can never be separated.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foldervision.atomic import atomic_path
from foldervision.images import LoadedImages, load_images
from foldervision.runs import RunFolder

if TYPE_CHECKING:
    import keras

METADATA_ENTRY = "foldervision.json"


@dataclass(frozen=True)
class Preprocessor:
    """Owns the class order and how a file becomes model input; saved inside model.keras."""

    model_name: str
    class_names: list[str]
    image_size: int
    color_mode: str
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self, paths: list[Path]) -> LoadedImages:
        """Decode files exactly as during training (the project's one loader, same size/mode)."""
        return load_images(paths, self.image_size, self.color_mode)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(
            model_name=data["model_name"],
            class_names=list(data["class_names"]),
            image_size=int(data["image_size"]),
            color_mode=data["color_mode"],
            extra=dict(data.get("extra", {})),
        )


def save_classifier(
    model: keras.Model, preprocessor: Preprocessor, path: str | os.PathLike
) -> None:
    """Write model + preprocessor to `path` atomically."""
    with atomic_path(path) as temporary:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(preprocessor.to_dict(), indent=2))


def resolve_model_path(path: str | os.PathLike) -> Path:
    """Accept a run folder or a .keras file."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).model_path
    if not path.exists():
        raise ValueError(
            f"{path}: no trained model here. Pass a run folder made by `foldervision train` "
            "or a .keras file."
        )
    return path


def load_classifier(path: str | os.PathLike) -> tuple[keras.Model, Preprocessor]:
    """Load a model saved by `save_classifier` (from its run folder or the file itself)."""
    import keras

    import foldervision.models.classifier  # noqa: F401  (registers the layers a model may use)

    model_path = resolve_model_path(path)
    return keras.saving.load_model(model_path, compile=False), read_preprocessor(model_path)


def read_preprocessor(path: str | os.PathLike) -> Preprocessor:
    """The class order and preprocessing saved in a .keras file, read without Keras."""
    model_path = resolve_model_path(path)
    try:
        with zipfile.ZipFile(model_path) as archive:
            metadata = json.loads(archive.read(METADATA_ENTRY))
    except KeyError as error:
        raise ValueError(
            f"{model_path}: a Keras model without foldervision metadata (class names, "
            "preprocessing); train it with `foldervision train`."
        ) from error
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{model_path}: not a readable .keras file ({error}).") from error
    return Preprocessor.from_dict(metadata)


INFERENCE_PIXELS_PER_BATCH = 16 * 224 * 224
"""Pixels per inference batch: 16 images at 224 px, 1024 at 28 px. Activations grow with
batch x pixels; a fixed 256 images at 224 px peaked above 20 GB."""


def inference_batch_size(image_size: int, limit: int = 256) -> int:
    """Images per inference batch at this size, so memory does not grow with the input size."""
    return max(1, min(limit, INFERENCE_PIXELS_PER_BATCH // (image_size * image_size)))


def traced_inference(model: keras.Model) -> Callable[[Any], Any]:
    """`model(x, training=False)` traced once: eager calls kept every activation of a batch
    alive (2.9 GB more for 32 images at 224 px) and ran 1.7x slower."""
    import tensorflow as tf

    return tf.function(lambda pixels: model(pixels, training=False), reduce_retracing=True)


def predict_probabilities(
    model: keras.Model, pixels: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """Class probabilities for uint8 pixels, in batches sized for the input, without Keras'
    per-call progress bar."""
    batch_size = batch_size or inference_batch_size(int(model.input_shape[1]))
    forward = traced_inference(model)
    outputs = []
    for start in range(0, len(pixels), batch_size):
        batch = np.asarray(pixels[start : start + batch_size], dtype=np.float32)
        outputs.append(np.asarray(forward(batch)))
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(outputs)
