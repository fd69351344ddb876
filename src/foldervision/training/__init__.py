"""Train any registered model on a class-per-subfolder folder and write a complete run folder.

Two steps, so that a caller can say what will run before it runs:

    settings = resolve_settings(TrainingConfig(data=..., out=...))  # recipe, flags, checks
    print(settings.recipe_line)
    metrics = train(settings)  # RunMetrics, also written to OUT/metrics.json

`settings` (see settings.py) holds every decision; data.py turns the folder into batches,
augmentation.py registers the augmentation styles, fitting.py runs the phases, and outputs.py
writes the run. The library prints nothing of its own: the skipped files and the recipe's
reason come back in the metrics (Keras' progress goes to stderr).
"""

from __future__ import annotations

from dataclasses import replace

import keras
import tensorflow as tf

from foldervision.models.classifier import with_flip_average
from foldervision.runs import RunFolder, RunMetrics
from foldervision.training.data import load_splits, make_preprocessor, split_record, training_data
from foldervision.training.ensemble import probe_ensemble
from foldervision.training.fitting import build_model, fit
from foldervision.training.outputs import evaluate_validation, run_metrics, write_run
from foldervision.training.settings import Settings, TrainingConfig, resolve_settings

__all__ = ["RunMetrics", "Settings", "TrainingConfig", "resolve_settings", "train"]


def train(settings: Settings) -> RunMetrics:
    """Train, keep the best epoch, evaluate on validation, and write the run folder (staged:
    it appears, or replaces an old run, only once complete)."""
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    with RunFolder(settings.out).staged(settings.overwrite) as run:
        return _train_into(run, settings)


def _train_into(run: RunFolder, settings: Settings) -> RunMetrics:
    """A run, step by step, written into the (staging) run folder; returns its metrics."""
    built = build_model(settings)
    preprocessor = make_preprocessor(settings, built.weights_description)
    splits = load_splits(settings, preprocessor)
    run.write_split(split_record(settings, splits))
    data = training_data(splits, preprocessor, settings)
    fitted = fit(built.model, settings, data, run.best_checkpoint_path)
    model = with_flip_average(built.model) if settings.flip_average else built.model
    ensemble_description = None
    if settings.ensemble_backbones is not None:
        ensemble = probe_ensemble(
            model,
            settings.ensemble_backbones,
            splits.train.paths,
            splits.train.labels,
            settings.class_weights,
            settings.seed,
        )
        model, ensemble_description = ensemble.model, ensemble.description
        preprocessor = replace(preprocessor, image_size=ensemble.image_size)
    validation = evaluate_validation(model, data, settings.folder.class_names, preprocessor)
    metrics = run_metrics(settings, splits, built, fitted, validation, model, ensemble_description)
    write_run(run, model, preprocessor, metrics, fitted.phase_boundaries)
    return metrics
