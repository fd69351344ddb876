"""Use a trained run: evaluate it on a labelled folder, or predict labels for image files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import keras

from foldervision.datasets import scan_labelled_folder
from foldervision.images import SkippedFile, is_image_file, list_image_files
from foldervision.models.saving import (
    Preprocessor,
    load_classifier,
    predict_probabilities,
    resolve_model_path,
)
from foldervision.reports import classification_metrics
from foldervision.runs import RunFolder

RECORDED_FIGURES = ("accuracy", "loss", "size", "ms_per_image")
"""What evaluations.json keeps of an evaluation: enough for `compare`."""


def evaluate_folder(
    run: str | os.PathLike, folder: str | os.PathLike, record: bool = True
) -> dict[str, Any]:
    """Accuracy, per-class figures and confusion matrix of a trained model on a labelled folder.

    The result is also recorded in the run folder (keyed by the data folder) so `compare` can
    show test accuracy next to validation accuracy.
    """
    model, preprocessor = load_classifier(run)
    labelled = scan_labelled_folder(
        folder, class_names=preprocessor.class_names, min_images_per_class=0
    )
    loaded = preprocessor.load(labelled.paths)
    labels = labelled.labels_of(loaded.paths)
    started = time.perf_counter()
    probabilities = predict_probabilities(model, loaded.pixels)
    seconds = time.perf_counter() - started
    result = classification_metrics(labels, probabilities, preprocessor.class_names)
    result.update(
        {
            "data": str(Path(folder).resolve()),
            "model": preprocessor.model_name,
            "ms_per_image": round(1000 * seconds / max(1, len(labels)), 4),
            "skipped_files": [item.to_dict() for item in loaded.skipped],
        }
    )
    if record and Path(run).is_dir():
        figures = {key: result[key] for key in RECORDED_FIGURES}
        RunFolder(run).record_evaluation(result["data"], figures)
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


def predict_files(
    run: str | os.PathLike, inputs: list[str | os.PathLike]
) -> tuple[list[dict[str, Any]], list[SkippedFile]]:
    """Label and class probabilities for each readable image, decoded as during training."""
    model, preprocessor = load_classifier(run)
    return predict_with(model, preprocessor, collect_image_paths(inputs))


def predict_with(
    model: keras.Model, preprocessor: Preprocessor, paths: list[Path]
) -> tuple[list[dict[str, Any]], list[SkippedFile]]:
    not_images = [
        SkippedFile(str(path), f"{path}: not an image file (unknown extension).")
        for path in paths
        if not is_image_file(path)
    ]
    loaded = preprocessor.load([path for path in paths if is_image_file(path)])
    probabilities = predict_probabilities(model, loaded.pixels)
    predictions = []
    for path, row in zip(loaded.paths, probabilities):
        best = int(row.argmax())
        predictions.append(
            {
                "path": str(path),
                "label": preprocessor.class_names[best],
                "confidence": float(row[best]),
                "probabilities": {
                    name: float(value) for name, value in zip(preprocessor.class_names, row)
                },
            }
        )
    return predictions, not_images + loaded.skipped


def run_summary(run: str | os.PathLike) -> dict[str, Any]:
    """What `compare` shows for one run: its metrics plus recorded test evaluations."""
    resolve_model_path(run)
    folder = RunFolder(run)
    return {
        "run": str(folder.path),
        "metrics": folder.read_metrics(),
        "evaluations": folder.read_evaluations(),
    }


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
