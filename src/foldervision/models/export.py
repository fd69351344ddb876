"""Export a trained classifier for deployment (TFLite, ONNX, SavedModel) and check it agrees.

Preprocessing lives inside the graph, so an exported model takes the same raw [0, 255] pixels
as model.keras; the class order is written beside it in labels.txt.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from foldervision.atomic import write_json_atomic, write_text_atomic
from foldervision.errors import AlreadyExistsError
from foldervision.models.saving import load_classifier
from foldervision.runs import RunFolder

EXPORT_FORMATS: dict[str, str] = {
    "tflite": "model.tflite",
    "onnx": "model.onnx",
    "saved_model": "saved_model",
}
"""Format name -> file (or folder) name inside the export folder."""

KERAS_EXPORT_NAMES = {"tflite": "litert", "onnx": "onnx", "saved_model": "tf_saved_model"}


def export_classifier(
    run: str | os.PathLike,
    export_format: str,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write RUN/export/<format file> (or into `out`) plus labels.txt and preprocessor.json."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(
            f"Unknown export format {export_format!r}; use one of {', '.join(EXPORT_FORMATS)}."
        )
    model, preprocessor = load_classifier(run)
    folder = Path(out) if out is not None else RunFolder(run).export_folder
    target = folder / EXPORT_FORMATS[export_format]
    if target.exists() and not overwrite:
        raise AlreadyExistsError(f"{target}: an export already exists here")
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{target.name}.partial-{os.getpid()}"
    try:
        export_model_file(model, export_format, Path(str(staging) + target.suffix))
        _replace(Path(str(staging) + target.suffix), target)
    finally:
        _remove(Path(str(staging) + target.suffix))
    write_text_atomic(folder / "labels.txt", "\n".join(preprocessor.class_names) + "\n")
    write_json_atomic(folder / "preprocessor.json", preprocessor.to_dict())
    return target


def export_model_file(model: keras.Model, export_format: str, path: Path) -> None:
    """Keras' own exporter; the preprocessing is in the graph, so the file takes raw pixels.

    The one Keras-to-file export: classifiers and embedding models (ONNX cache) alike.
    """
    model(np.zeros((1, *model.input_shape[1:]), "float32"))  # exporters want a called model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's NumPy deprecation notes
            model.export(str(path), format=KERAS_EXPORT_NAMES[export_format], verbose=False)
    except ImportError as error:
        raise ValueError(
            f"exporting to {export_format} needs extra packages ({error}); run "
            "`pip install 'foldervision[export]'`."
        ) from error


def _replace(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(source, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def load_exported(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A function pixels -> probabilities that runs an exported file with its own runtime."""
    path = Path(path)
    if path.suffix == ".tflite":
        return _tflite_runner(path)
    if path.suffix == ".onnx":
        return _onnx_runner(path)
    if path.is_dir():
        return _saved_model_runner(path)
    raise ValueError(f"{path}: not an exported model (.tflite, .onnx or a SavedModel folder).")


def _tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def run(pixels: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_index, pixels.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, pixels.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return run


def _onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from foldervision.onnx_runtime import open_session, parallel_forward

    try:
        session = open_session(path)
    except ImportError as error:
        raise ValueError(
            "onnxruntime is not installed; run `pip install 'foldervision[export]'`."
        ) from error
    return parallel_forward(session)


def _saved_model_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda pixels: np.asarray(loaded.serve(tf.constant(pixels, dtype=tf.float32)))


def top1_agreement(keras_probabilities: np.ndarray, exported_probabilities: np.ndarray) -> float:
    """Fraction of images on which the exported model picks the same class as Keras."""
    return float(
        (keras_probabilities.argmax(axis=1) == exported_probabilities.argmax(axis=1)).mean()
    )
