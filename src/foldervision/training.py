"""Train any registered model on a class-per-subfolder folder and write a complete run folder.

The same code path serves LeNet (one phase, from scratch) and MobileNetV2 (frozen-base head
training, then fine-tuning of the top blocks): the registry says which phases a model needs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from foldervision.datasets import LabelledFolder, scan_labelled_folder, stratified_split
from foldervision.images import SkippedFile
from foldervision.models import BuiltModel, ModelSpec, TrainingPhase, get_model_spec
from foldervision.models.saving import Preprocessor, predict_probabilities, save_classifier
from foldervision.reports import (
    classification_metrics,
    plot_confusion_matrix,
    plot_history,
    write_run_report,
)
from foldervision.runs import RunFolder

STEPS_PER_EXECUTION = 16
"""Training steps per compiled call: small models (LeNet) spend most of a step in Python and
dispatch overhead; 16 steps per call made a LeNet epoch 1.75x faster on 2 CPU cores."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a run; written to metrics.json so the run can be repeated."""

    data: Path
    out: Path
    model: str = "lenet"
    epochs: int | None = None
    head_epochs: int | None = None
    val_split: float = 0.2
    seed: int = 42
    image_size: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weights: str | None = None
    unfreeze: str | None = None
    augment: bool = True
    flip: bool = False
    overwrite: bool = False
    verbose: int | str = "auto"


@dataclass
class LoadedSplit:
    """Decoded pixels and labels of one side of the split (bad files already dropped)."""

    pixels: np.ndarray
    labels: np.ndarray
    files: list[str]


@dataclass
class Splits:
    """Both sides of the split, decoded, and the files that could not be read."""

    train: LoadedSplit
    validation: LoadedSplit
    skipped: list[SkippedFile]


@dataclass
class FitResult:
    """What fitting produced besides the weights: the curves and the chosen epoch."""

    history: dict[str, list[float]]
    phase_boundaries: list[int]
    """Epochs after which a new phase started (where the history plot draws a line)."""
    best_epoch: int
    train_seconds: float


def phases_for(spec: ModelSpec, config: TrainingConfig) -> list[TrainingPhase]:
    """The registry's recipe, with the user's --epochs / --head-epochs / --learning-rate applied.

    --epochs sets the last phase (the whole run for one-phase models); --head-epochs the first
    phase of a pretrained model; --unfreeze how many top blocks the fine-tuning phase trains.
    """
    phases = list(spec.phases)
    if config.epochs is not None:
        if config.epochs < 1:
            raise ValueError(f"--epochs must be at least 1 (got {config.epochs}).")
        phases[-1] = replace(phases[-1], epochs=config.epochs)
    if config.head_epochs is not None and len(phases) > 1:
        phases[0] = replace(phases[0], epochs=config.head_epochs)
    if config.learning_rate is not None:
        phases[-1] = replace(phases[-1], learning_rate=config.learning_rate)
    if config.unfreeze is not None and len(phases) > 1:
        trainable = "all" if config.unfreeze == "all" else f"top:{int(config.unfreeze)}"
        phases[-1] = replace(phases[-1], trainable=trainable)
    return [phase for phase in phases if phase.epochs > 0]


def build_augmentation(flip: bool, seed: int) -> keras.Sequential:
    """Small geometric and photometric changes that keep the label.

    No flips by default: a mirrored 2 is not a 2. Pass flip=True for photos.
    """
    augmentation_layers = [
        keras.layers.RandomRotation(0.04, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
        keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
    ]
    if flip:
        augmentation_layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))
    return keras.Sequential(augmentation_layers, name="augmentation")


def make_dataset(
    split: LoadedSplit,
    batch_size: int,
    seed: int,
    augmentation: keras.Sequential | None = None,
    shuffle: bool = False,
) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((split.pixels, split.labels))
    if shuffle:
        dataset = dataset.shuffle(len(split.labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(
        lambda pixels, labels: (tf.cast(pixels, tf.float32), labels),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augmentation is not None:
        dataset = dataset.map(
            lambda pixels, labels: (augmentation(pixels, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


class BestEpoch(keras.callbacks.Callback):
    """Keep the weights of the best validation epoch (accuracy, then loss), across phases,
    and write them to a checkpoint so a crash keeps the best model so far."""

    def __init__(self, checkpoint_path: Path):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.best_score: tuple[float, float] | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0
        self.epochs_seen = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        self.epochs_seen += 1
        score = (logs.get("val_accuracy", 0.0), -logs.get("val_loss", np.inf))
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best_weights = [np.copy(weight) for weight in self.model.get_weights()]
            self.best_epoch = self.epochs_seen
            self.model.save_weights(self.checkpoint_path, overwrite=True)

    def restore(self, model: keras.Model) -> None:
        if self.best_weights is not None:
            model.set_weights(self.best_weights)


def load_split(
    folder: LabelledFolder, preprocessor: Preprocessor
) -> tuple[LoadedSplit, list[SkippedFile]]:
    """Decode one side of the split; files that fail to load are dropped with their label."""
    loaded = preprocessor.load(folder.paths)
    files = [folder.relative(path) for path in loaded.paths]
    return LoadedSplit(loaded.pixels, folder.labels_of(loaded.paths), files), loaded.skipped


def compile_for_phase(
    model: keras.Model, spec: ModelSpec, phase: TrainingPhase, steps_per_epoch: int
) -> None:
    """Set what learns (the model's own freeze hook), and the phase's learning rate (constant,
    or cosine-decaying to ~0)."""
    spec.set_trainable(model, phase.trainable)
    if phase.schedule not in ("cosine", "constant"):
        raise ValueError(
            f"Unknown learning-rate schedule {phase.schedule!r}; use cosine or constant."
        )
    schedule = phase.learning_rate
    if phase.schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(
            phase.learning_rate, decay_steps=max(1, phase.epochs * steps_per_epoch), alpha=0.01
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )


def fit_phases(
    model: keras.Model,
    spec: ModelSpec,
    phases: list[TrainingPhase],
    train_dataset: tf.data.Dataset,
    validation_dataset: tf.data.Dataset,
    best_epoch: BestEpoch,
    verbose: int | str,
) -> tuple[dict[str, list[float]], list[int]]:
    """Run each phase in turn; return the joined per-epoch history and where phases changed."""
    history: dict[str, list[float]] = {}
    boundaries: list[int] = []
    steps_per_epoch = int(train_dataset.cardinality())
    for phase in phases:
        compile_for_phase(model, spec, phase, steps_per_epoch)
        # Progress is for people: send it to stderr so stdout stays pipe-friendly.
        with contextlib.redirect_stdout(sys.stderr):
            result = model.fit(
                train_dataset,
                validation_data=validation_dataset,
                epochs=phase.epochs,
                callbacks=[best_epoch],
                shuffle=False,  # the tf.data pipeline shuffles, seeded
                verbose=verbose,
            )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(value) for value in values)
        boundaries.append(len(history.get("loss", [])))
    return history, boundaries[:-1]


def train(config: TrainingConfig) -> dict[str, Any]:
    """Train, pick the best epoch, evaluate on validation and write the run folder."""
    spec = get_model_spec(config.model)
    phases = phases_for(spec, config)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    folder = scan_labelled_folder(config.data)
    train_indices, validation_indices = stratified_split(
        folder.labels, config.val_split, config.seed
    )
    with RunFolder(config.out).staged(config.overwrite) as run:
        metrics = _train_into(run, spec, phases, config, folder, train_indices, validation_indices)
    return metrics


def _train_into(
    run: RunFolder,
    spec: ModelSpec,
    phases: list[TrainingPhase],
    config: TrainingConfig,
    folder: LabelledFolder,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
) -> dict[str, Any]:
    """A run, step by step, written into the (staging) run folder; returns its metrics."""
    built = build_model(spec, config, len(folder.class_names))
    preprocessor = make_preprocessor(spec, config, folder, built.weights_description)
    splits = load_splits(folder, train_indices, validation_indices, preprocessor)
    run.write_split(split_record(folder, splits, config))
    train_dataset, validation_dataset = make_datasets(splits, batch_size_for(spec, config), config)
    fitted = fit(built.model, spec, phases, train_dataset, validation_dataset, run, config.verbose)
    validation = evaluate_validation(built.model, splits.validation, folder.class_names)
    metrics = run_metrics(spec, phases, config, folder, splits, built, fitted, validation)
    write_run(run, built.model, preprocessor, metrics, fitted.phase_boundaries)
    return metrics


def image_size_for(spec: ModelSpec, config: TrainingConfig) -> int:
    return config.image_size or spec.default_image_size


def batch_size_for(spec: ModelSpec, config: TrainingConfig) -> int:
    return config.batch_size or spec.batch_size


def build_model(spec: ModelSpec, config: TrainingConfig, num_classes: int) -> BuiltModel:
    """A pretrained model starts from the best weights found offline unless told otherwise."""
    weights = config.weights
    if weights is None and spec.pretrained:
        weights = "auto"
    return spec.build(num_classes, image_size=image_size_for(spec, config), weights=weights)


def make_preprocessor(
    spec: ModelSpec, config: TrainingConfig, folder: LabelledFolder, weights_description: str
) -> Preprocessor:
    """How files become model input, saved inside model.keras so predict feeds the same."""
    return Preprocessor(
        model_name=spec.name,
        class_names=folder.class_names,
        image_size=image_size_for(spec, config),
        color_mode=spec.color_mode,
        extra={"weights": weights_description},
    )


def load_splits(
    folder: LabelledFolder,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
    preprocessor: Preprocessor,
) -> Splits:
    """Decode both sides of the split, report unreadable files, and check every class is left."""
    train_split, train_skipped = load_split(folder.subset(train_indices), preprocessor)
    validation_split, validation_skipped = load_split(
        folder.subset(validation_indices), preprocessor
    )
    splits = Splits(train_split, validation_split, train_skipped + validation_skipped)
    report_skipped(splits.skipped)
    _check_loaded(splits, folder)
    return splits


def make_datasets(
    splits: Splits, batch_size: int, config: TrainingConfig
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Shuffled, augmented training batches; validation batches as they are."""
    augmentation = build_augmentation(config.flip, config.seed) if config.augment else None
    train_dataset = make_dataset(splits.train, batch_size, config.seed, augmentation, shuffle=True)
    validation_dataset = make_dataset(splits.validation, batch_size, config.seed)
    return train_dataset, validation_dataset


def fit(
    model: keras.Model,
    spec: ModelSpec,
    phases: list[TrainingPhase],
    train_dataset: tf.data.Dataset,
    validation_dataset: tf.data.Dataset,
    run: RunFolder,
    verbose: int | str,
) -> FitResult:
    """Run every phase, then put the best validation epoch's weights back into the model."""
    best_epoch = BestEpoch(run.best_checkpoint_path)
    best_epoch.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    if verbose == "auto":
        verbose = 1 if sys.stderr.isatty() else 2
    started = time.perf_counter()
    history, boundaries = fit_phases(
        model, spec, phases, train_dataset, validation_dataset, best_epoch, verbose
    )
    train_seconds = time.perf_counter() - started
    best_epoch.restore(model)
    return FitResult(history, boundaries, best_epoch.best_epoch, train_seconds)


def evaluate_validation(
    model: keras.Model, validation: LoadedSplit, class_names: list[str]
) -> dict[str, Any]:
    probabilities = predict_probabilities(model, validation.pixels)
    return classification_metrics(validation.labels, probabilities, class_names)


def run_metrics(
    spec: ModelSpec,
    phases: list[TrainingPhase],
    config: TrainingConfig,
    folder: LabelledFolder,
    splits: Splits,
    built: BuiltModel,
    fitted: FitResult,
    validation: dict[str, Any],
) -> dict[str, Any]:
    """Everything metrics.json records: the settings (to repeat the run) and the results."""
    return {
        "model": spec.name,
        "data": str(folder.root),
        "classes": folder.class_names,
        "epochs": sum(phase.epochs for phase in phases),
        "phases": [phase.__dict__ for phase in phases],
        "best_epoch": fitted.best_epoch,
        "train_size": len(splits.train.labels),
        "val_size": len(splits.validation.labels),
        "val_split": config.val_split,
        "seed": config.seed,
        "image_size": image_size_for(spec, config),
        "color_mode": spec.color_mode,
        "batch_size": batch_size_for(spec, config),
        "augment": config.augment,
        "flip": config.flip,
        "weights": built.weights_description,
        "parameters": int(built.model.count_params()),
        "val_accuracy": validation["accuracy"],
        "val_loss": validation["loss"],
        "per_class": validation["per_class"],
        "confusion_matrix": validation["confusion_matrix"],
        "train_seconds": round(fitted.train_seconds, 3),
        "history": fitted.history,
        "skipped_files": [item.to_dict() for item in splits.skipped],
    }


def write_run(
    run: RunFolder,
    model: keras.Model,
    preprocessor: Preprocessor,
    metrics: dict[str, Any],
    phase_boundaries: list[int],
) -> None:
    """The model, its metrics, the two plots and the report."""
    save_classifier(model, preprocessor, run.model_path)
    run.write_metrics(metrics)
    plot_history(metrics["history"], run.history_plot_path, phase_boundaries)
    plot_confusion_matrix(
        metrics["confusion_matrix"],
        metrics["classes"],
        run.confusion_matrix_plot_path,
        title=f"{metrics['model']}: validation ({metrics['val_size']} images)",
    )
    write_run_report(metrics, run.report_path)


def report_skipped(skipped: list[SkippedFile]) -> None:
    if not skipped:
        return
    print(f"warning: skipped {len(skipped)} file(s) that could not be read:", file=sys.stderr)
    for item in skipped:
        print(f"  {item.reason}", file=sys.stderr)


def _check_loaded(splits: Splits, folder: LabelledFolder) -> None:
    for name, split in (("training", splits.train), ("validation", splits.validation)):
        missing = sorted(set(range(len(folder.class_names))) - set(split.labels.tolist()))
        if missing:
            names = [folder.class_names[index] for index in missing]
            raise ValueError(
                f"{folder.root}: after skipping unreadable files, the {name} split has no images "
                f"of class(es) {names}; add readable images to those subfolders."
            )


def split_record(folder: LabelledFolder, splits: Splits, config: TrainingConfig) -> dict[str, Any]:
    """Which file went where (paths relative to the data folder), for split.json."""
    return {
        "data": str(folder.root),
        "seed": config.seed,
        "val_split": config.val_split,
        "classes": folder.class_names,
        "train": [
            [path, int(label)] for path, label in zip(splits.train.files, splits.train.labels)
        ],
        "validation": [
            [path, int(label)]
            for path, label in zip(splits.validation.files, splits.validation.labels)
        ],
    }
