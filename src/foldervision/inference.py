"""Use a trained run: evaluate it on a labelled folder, or predict labels for image files."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.cache import cached_onnx_export, sha256_of
from foldervision.datasets import scan_labelled_folder
from foldervision.images import SkippedFile, is_image_file, list_image_files
from foldervision.models.saving import (
    Preprocessor,
    inference_batch_size,
    load_classifier,
    predict_probabilities,
    read_preprocessor,
    resolve_model_path,
)
from foldervision.reports import (
    classification_metrics,
    find_mistakes,
    plot_confusion_matrix,
    write_mistakes_sheet,
)
from foldervision.runs import DEFAULT_MISTAKES, RunFolder, RunMetrics

Probabilities = Callable[[np.ndarray], np.ndarray]
"""uint8 pixels (N, S, S, C) -> class probabilities (N, classes)."""

CLASSIFIER_CACHE_FOLDER = "classifiers"
CLASSIFIER_EXPORT_FORMAT = 1
"""Bumped when the export recipe changes, so stale cached files are not reused."""


def probability_function(
    run: str | os.PathLike, use_onnx: bool = True
) -> tuple[Probabilities, Preprocessor]:
    """How a trained run turns pixels into class probabilities, and how files are decoded for it.

    With `use_onnx` ONNX Runtime runs the model, exported once to
    `<cache>/classifiers/<hash of the .keras file>-v1.onnx`: later `predict` and `evaluate`
    calls never import TensorFlow, whose import alone takes about 3.5 s on the reference
    machine. If the export fails, Keras runs the model (with a note on stderr). A process
    that has just trained the model passes `use_onnx=False`: it holds Keras already.
    """
    model_path = resolve_model_path(run)
    preprocessor = read_preprocessor(model_path)
    onnx_file = _onnx_export(model_path) if use_onnx else None
    if onnx_file is not None:
        return _onnx_probabilities(onnx_file, preprocessor), preprocessor
    model, _ = load_classifier(model_path)
    return (lambda pixels: predict_probabilities(model, pixels)), preprocessor


def _onnx_export(model_path: Path) -> Path | None:
    """The model's cached ONNX file, exported on first use; None (with a note) if it cannot be."""

    def export(path: Path) -> None:
        from foldervision.models.export import export_model_file

        export_model_file(load_classifier(model_path)[0], "onnx", path)

    key = sha256_of(model_path)[:16]
    try:
        return cached_onnx_export(CLASSIFIER_CACHE_FOLDER, key, CLASSIFIER_EXPORT_FORMAT, export)
    except Exception as error:  # any converter failure: Keras still runs the model
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"note: {model_path}: could not export to ONNX ({type(error).__name__}: {reason}); "
            "running it with Keras",
            file=sys.stderr,
        )
        return None


def _onnx_probabilities(path: Path, preprocessor: Preprocessor) -> Probabilities:
    """Batches sized for the images (memory), each split over the cores by `parallel_forward`."""
    from foldervision.onnx_runtime import load_cached_session, parallel_forward

    forward = parallel_forward(load_cached_session(path))
    batch_size = inference_batch_size(preprocessor.image_size)

    def run(pixels: np.ndarray) -> np.ndarray:
        outputs = [forward(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
        if not outputs:
            return np.zeros((0, len(preprocessor.class_names)), np.float32)
        return np.concatenate(outputs)

    return run


FILES_PER_CHUNK = 512
"""Files decoded at a time by `classify_files`: 77 MB of pixels at 224 px, whatever the folder."""


@dataclass
class ClassifiedFiles:
    """Class probabilities of the files that loaded, in order, and the files that did not."""

    probabilities: np.ndarray
    paths: list[Path]
    skipped: list[SkippedFile]
    seconds: float
    """Time spent in the model alone (for ms_per_image)."""


def classify_files(
    probabilities_of: Probabilities, preprocessor: Preprocessor, paths: list[Path]
) -> ClassifiedFiles:
    """Decode and classify files a chunk at a time, so memory does not grow with the folder."""
    outputs = [np.zeros((0, len(preprocessor.class_names)), np.float32)]
    classified = ClassifiedFiles(outputs[0], [], [], 0.0)
    for start in range(0, len(paths), FILES_PER_CHUNK):
        loaded = preprocessor.load(paths[start : start + FILES_PER_CHUNK])
        started = time.perf_counter()
        outputs.append(probabilities_of(loaded.pixels))
        classified.seconds += time.perf_counter() - started
        classified.paths += loaded.paths
        classified.skipped += loaded.skipped
    classified.probabilities = np.concatenate(outputs)
    return classified


RECORDED_FIGURES = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "loss",
    "size",
    "ms_per_image",
    "confusion_matrix_plot",
    "mistakes_sheet",
)
"""What evaluations.json keeps of an evaluation: enough for `compare`."""


def evaluate_folder(
    run: str | os.PathLike,
    folder: str | os.PathLike,
    record: bool = True,
    confusion_matrix_plot: str | os.PathLike | None = None,
    use_onnx: bool = True,
    mistakes: int = DEFAULT_MISTAKES,
    mistakes_sheet: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class figures and confusion matrix of a trained model on a labelled folder.

    The result is also recorded in the run folder (keyed by the data folder) so `compare` can
    show test accuracy next to validation accuracy, and the confusion matrix is drawn as
    training draws it: to `confusion_matrix_plot` if given, else into the run folder (see
    `RunFolder.evaluation_confusion_matrix_plot_path`) when recording. The `mistakes` most
    confident mistakes are drawn the same way (to `mistakes_sheet`, else beside the matrix).
    """
    probabilities_of, preprocessor = probability_function(run, use_onnx)
    data = str(Path(folder).resolve())
    recording = record and Path(run).is_dir()
    plot_path = None
    if confusion_matrix_plot is not None:
        plot_path = Path(confusion_matrix_plot)
    elif recording:
        plot_path = RunFolder(run).evaluation_confusion_matrix_plot_path(data)
    sheet_path = None
    if mistakes_sheet is not None:
        sheet_path = Path(mistakes_sheet)
    elif recording:
        sheet_path = RunFolder(run).evaluation_mistakes_sheet_path(data)
    result = evaluate_with(probabilities_of, preprocessor, folder, plot_path, mistakes, sheet_path)
    if recording:
        figures = {key: result[key] for key in RECORDED_FIGURES}
        RunFolder(run).record_evaluation(data, figures)
    return result


def evaluate_with(
    probabilities_of: Probabilities,
    preprocessor: Preprocessor,
    folder: str | os.PathLike,
    plot_path: Path | None = None,
    mistakes: int = DEFAULT_MISTAKES,
    mistakes_path: Path | None = None,
) -> dict[str, Any]:
    """`evaluate`'s figures for any classifier (a trained run, CLIP's zero-shot labels) on a
    labelled folder whose subfolders are the preprocessor's classes; the matrix drawn to
    `plot_path` and the `mistakes` most confident mistakes to `mistakes_path` when given."""
    labelled = scan_labelled_folder(
        folder, class_names=preprocessor.class_names, min_images_per_class=0
    )
    classified = classify_files(probabilities_of, preprocessor, labelled.paths)
    labels = labelled.labels_of(classified.paths)
    result = classification_metrics(labels, classified.probabilities, preprocessor.class_names)
    data = str(Path(folder).resolve())
    wrong = find_mistakes(
        classified.paths, labels, classified.probabilities, preprocessor.class_names, mistakes
    )
    sheet = write_mistakes_sheet(wrong, mistakes_path) if mistakes_path and wrong else None
    if plot_path is not None:
        plot_confusion_matrix(
            result["confusion_matrix"],
            preprocessor.class_names,
            plot_path,
            title=f"{preprocessor.model_name}: {Path(data).name} ({result['size']} images)",
        )
    result.update(
        {
            "data": data,
            "model": preprocessor.model_name,
            "ms_per_image": round(1000 * classified.seconds / max(1, len(labels)), 4),
            "confusion_matrix_plot": str(plot_path.resolve()) if plot_path is not None else None,
            "mistakes": wrong,
            "mistakes_sheet": str(sheet.resolve()) if sheet is not None else None,
            "skipped_files": [item.to_dict() for item in classified.skipped],
        }
    )
    return result


def collect_image_paths(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to the images inside; anything else is an error."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(list_image_files(item))
        elif item.exists():
            paths.append(item)
        else:
            raise ValueError(f"{item}: no such file or folder.")
    return paths


DEFAULT_TOP = 3
"""How many classes `predict` ranks per image: the runner-up says how sure the model was."""


def predict_files(
    run: str | os.PathLike, inputs: list[str | os.PathLike], top: int = DEFAULT_TOP
) -> tuple[list[dict[str, Any]], list[SkippedFile]]:
    """Label, class probabilities and the `top` most likely classes for each readable image,
    decoded as during training."""
    _check_top(top)
    probabilities_of, preprocessor = probability_function(run)
    return predict_with(probabilities_of, preprocessor, collect_image_paths(inputs), top)


def top_classes(
    probabilities: np.ndarray, class_names: list[str], top: int
) -> list[dict[str, Any]]:
    """The `top` most likely classes, most likely first (ties keep class order); fewer when
    the model has fewer classes."""
    _check_top(top)
    order = np.argsort(-probabilities, kind="stable")[:top]
    return [
        {"label": class_names[index], "probability": float(probabilities[index])} for index in order
    ]


def _check_top(top: int) -> None:
    if top < 1:
        raise ValueError(f"--top must be at least 1 (got {top}).")


def predict_with(
    probabilities_of: Probabilities,
    preprocessor: Preprocessor,
    paths: list[Path],
    top: int = DEFAULT_TOP,
) -> tuple[list[dict[str, Any]], list[SkippedFile]]:
    not_images = [
        SkippedFile(str(path), f"{path}: not an image file (unknown extension).")
        for path in paths
        if not is_image_file(path)
    ]
    classified = classify_files(
        probabilities_of, preprocessor, [path for path in paths if is_image_file(path)]
    )
    predictions = []
    for path, row in zip(classified.paths, classified.probabilities):
        best = int(row.argmax())
        predictions.append(
            {
                "path": str(path),
                "label": preprocessor.class_names[best],
                "confidence": float(row[best]),
                "probabilities": {
                    name: float(value) for name, value in zip(preprocessor.class_names, row)
                },
                "top": top_classes(row, preprocessor.class_names, top),
            }
        )
    return predictions, not_images + classified.skipped


@dataclass(frozen=True)
class RunSummary:
    """What `compare` shows for one run: its metrics plus recorded test evaluations."""

    run: str
    metrics: RunMetrics
    evaluations: dict[str, dict[str, Any]]
    """Data folder -> the RECORDED_FIGURES of `evaluate_folder` on it."""

    @property
    def test(self) -> dict[str, Any] | None:
        """The first recorded evaluation (the test folder), None when never evaluated."""
        return next(iter(self.evaluations.values()), None)


def run_summary(run: str | os.PathLike) -> RunSummary:
    resolve_model_path(run)
    folder = RunFolder(run)
    return RunSummary(str(folder.path), folder.read_metrics(), folder.read_evaluations())


def check_export(
    run: str | os.PathLike, exported: str | os.PathLike, limit: int = 256
) -> tuple[float, int]:
    """Top-1 agreement between model.keras and an exported file on the run's validation files."""
    from foldervision.models.export import load_exported, top1_agreement

    model, preprocessor = load_classifier(run)
    split = RunFolder(run).read_split()
    root = Path(split["data"])
    files = [root / path for path, _ in split["validation"][:limit] if (root / path).exists()]
    if not files:
        raise ValueError(f"{root}: the run's validation images are gone; pass --check 0.")
    pixels = preprocessor.load(files).pixels.astype("float32")
    exported_probabilities = load_exported(exported)(pixels)
    return top1_agreement(predict_probabilities(model, pixels), exported_probabilities), len(pixels)
