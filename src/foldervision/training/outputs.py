"""What a run leaves behind: its validation figures, metrics.json, the model and the report."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from foldervision.models import BuiltModel
from foldervision.models.saving import Preprocessor, save_classifier, traced_inference
from foldervision.reports import (
    classification_metrics,
    find_mistakes,
    plot_confusion_matrix,
    plot_history,
    write_mistakes_sheet,
    write_run_report,
)
from foldervision.runs import RunFolder, RunMetrics
from foldervision.training.data import Splits, TrainingData
from foldervision.training.fitting import FitResult
from foldervision.training.settings import Settings

VALIDATION_FILES_PER_BATCH = 32


def evaluate_validation(
    model: keras.Model, data: TrainingData, class_names: list[str], preprocessor: Preprocessor
) -> dict[str, Any]:
    """Validation metrics of the saved model, batch by batch (bounded memory), and its most
    confident mistakes. A model whose input size is not the training size (a probe ensemble)
    gets the files decoded at its own size, as `predict` will decode them."""
    forward = traced_inference(model)
    validation = data.splits.validation
    if preprocessor.image_size == data.preprocessor.image_size:
        batches = (pixels for pixels, _ in data.validation_dataset())
    else:
        batches = (
            preprocessor.load(validation.paths[start : start + VALIDATION_FILES_PER_BATCH]).pixels
            for start in range(0, len(validation.paths), VALIDATION_FILES_PER_BATCH)
        )
    probabilities = np.concatenate([np.asarray(forward(pixels)) for pixels in batches])
    metrics = classification_metrics(validation.labels, probabilities, class_names)
    metrics["mistakes"] = find_mistakes(
        validation.paths, validation.labels, probabilities, class_names
    )
    return metrics


def run_metrics(
    settings: Settings,
    splits: Splits,
    built: BuiltModel,
    fitted: FitResult,
    validation: dict[str, Any],
    saved: keras.Model,
    ensemble: str | None = None,
) -> RunMetrics:
    """Everything metrics.json records: the settings (to repeat the run) and the results
    (`saved`: the model written to model.keras, whose parameters are counted)."""
    return RunMetrics(
        model=settings.model_entry.name,
        recipe=settings.recipe.name,
        recipe_reason=settings.reason,
        data=str(settings.folder.root),
        classes=settings.folder.class_names,
        epochs=sum(phase.epochs for phase in settings.phases),
        phases=list(settings.phases),
        best_epoch=fitted.best_epoch,
        train_size=len(splits.train.labels),
        val_size=len(splits.validation.labels),
        val_split=settings.val_split,
        seed=settings.seed,
        image_size=settings.image_size,
        color_mode=settings.model_entry.color_mode,
        batch_size=settings.batch_size,
        augment=settings.augmentation is not None,
        augmentation=settings.augmentation or "none",
        flip=settings.flip,
        weights=built.weights_description,
        parameters=int(saved.count_params()),
        val_accuracy=validation["accuracy"],
        val_loss=validation["loss"],
        per_class=validation["per_class"],
        confusion_matrix=validation["confusion_matrix"],
        train_seconds=round(fitted.train_seconds, 3),
        history=fitted.history,
        skipped_files=splits.skipped,
        class_weights=None
        if settings.class_weights is None
        else {
            name: round(settings.class_weights[index], 6)
            for index, name in enumerate(settings.folder.class_names)
        },
        val_balanced_accuracy=validation["balanced_accuracy"],
        val_macro_f1=validation["macro_f1"],
        mistakes=validation["mistakes"],
        head_choice=fitted.head_choice,
        flip_average=settings.flip_average,
        ensemble=ensemble,
    )


def write_run(
    run: RunFolder,
    model: keras.Model,
    preprocessor: Preprocessor,
    metrics: RunMetrics,
    phase_boundaries: list[int],
) -> None:
    """The model, its metrics, the two plots, the mistakes' contact sheet and the report."""
    save_classifier(model, preprocessor, run.model_path)
    run.write_metrics(metrics)
    plot_history(metrics.history, run.history_plot_path, phase_boundaries)
    plot_confusion_matrix(
        metrics.confusion_matrix,
        metrics.classes,
        run.confusion_matrix_plot_path,
        title=f"{metrics.model}: validation ({metrics.val_size} images)",
    )
    if metrics.mistakes:
        write_mistakes_sheet(metrics.mistakes, run.mistakes_sheet_path)
    write_run_report(metrics, run.report_path)
