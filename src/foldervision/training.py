"""Train any registered model on a class-per-subfolder folder and write a complete run folder.

The same code path serves LeNet (one phase, from scratch) and MobileNetV2 (frozen-base head
training, then fine-tuning of the top blocks): the recipe chosen from the data (see
`foldervision.recipes`) says which phases, size, augmentation and batch size a run uses.

Memory stays bounded whatever the folder's size: decoded pixels are held in memory only while
they fit in `IN_MEMORY_PIXEL_BYTES`; beyond that, each batch is decoded from its files as
training goes. A head phase on a frozen backbone learns from features computed once.
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
from foldervision.images import SkippedFile, channels_for, iter_images
from foldervision.models import BuiltModel, ModelEntry, TrainingPhase, get_model_entry
from foldervision.models.saving import Preprocessor, save_classifier, traced_inference
from foldervision.recipes import (
    Recipe,
    choose_recipe,
    describe_choice,
    get_recipe,
    profile_images,
)
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

IN_MEMORY_PIXEL_BYTES = 256 * 2**20
"""Decoded pixels of a split are kept in memory up to this size (all of MNIST at 28 px is
15 MB); a bigger split is decoded batch by batch from its files, so memory stays flat."""

PREFETCH_BATCHES = 2
"""Batches prepared ahead of the one training: enough to overlap decoding, and bounded."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a run; written to metrics.json so the run can be repeated."""

    data: Path
    out: Path
    model: str | None = None
    """None: the recipe's model (LeNet for digits, MobileNetV2 for photos)."""
    recipe: str | None = None
    """None: chosen from the data (see foldervision.recipes)."""
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
    flip: bool | None = None
    """None: the recipe's choice (flips for photos, none for digits)."""
    overwrite: bool = False
    verbose: int | str = "auto"


@dataclass
class LoadedSplit:
    """One side of the split (bad files already dropped): its files and labels, and their
    decoded pixels when they fit in memory (None: batches are decoded from the files)."""

    paths: list[Path]
    labels: np.ndarray
    files: list[str]
    pixels: np.ndarray | None = None

    def pixels_of(self, indices: np.ndarray, preprocessor: Preprocessor) -> np.ndarray:
        """uint8 pixels of some images, from memory or decoded with the project's loader."""
        if self.pixels is not None:
            return self.pixels[indices]
        loaded = preprocessor.load([self.paths[index] for index in indices])
        if loaded.skipped:
            raise ValueError(
                f"{loaded.skipped[0].reason} It decoded when training started; was it changed?"
            )
        return loaded.pixels


@dataclass(frozen=True)
class Settings:
    """What a run uses: the recipe with every explicit flag applied on top."""

    recipe: Recipe
    reason: str
    spec: ModelEntry
    phases: list[TrainingPhase]
    image_size: int
    batch_size: int
    flip: bool


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


def resolve_settings(config: TrainingConfig, folder: LabelledFolder) -> Settings:
    """Pick the recipe from the data (or --recipe / --model), then let explicit flags win."""
    profile = profile_images(folder.paths, len(folder.class_names))
    recipe, reason = choose_recipe(profile, config.recipe, config.model)
    model = config.model or recipe.model
    return Settings(
        recipe=recipe,
        reason=reason,
        spec=get_model_entry(model),
        phases=phases_for(recipe, config),
        image_size=config.image_size or recipe.image_size,
        batch_size=config.batch_size or recipe.batch_size,
        flip=recipe.flip if config.flip is None else config.flip,
    )


def phases_for(recipe: Recipe, config: TrainingConfig) -> list[TrainingPhase]:
    """The recipe's phases, with the user's --epochs / --head-epochs / --learning-rate applied.

    --epochs sets the last phase (the whole run for one-phase models); --head-epochs the first
    phase of a pretrained model; --unfreeze how many top blocks the fine-tuning phase trains.
    """
    phases = list(recipe.phases)
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


def build_augmentation(style: str, flip: bool, seed: int) -> keras.Sequential:
    """Small geometric and photometric changes that keep the label.

    "digits": shifts, rotations, zoom and contrast; no flips unless asked (a mirrored 2 is not
    a 2). "photo": random crops (zooming in up to 25%), small shifts, brightness and contrast.
    """
    if style == "digits":
        augmentation_layers = [
            keras.layers.RandomRotation(0.04, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
        ]
    elif style == "photo":
        augmentation_layers = [
            keras.layers.RandomZoom((-0.25, 0.0), fill_mode="reflect", seed=seed),
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 2),
            keras.layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 3),
        ]
    else:
        raise ValueError(f"Unknown augmentation {style!r}; use digits or photo.")
    if flip:
        augmentation_layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))
    return keras.Sequential(augmentation_layers, name="augmentation")


def make_dataset(
    split: LoadedSplit,
    preprocessor: Preprocessor,
    batch_size: int,
    seed: int,
    augmentation: keras.Sequential | None = None,
    shuffle: bool = False,
) -> tf.data.Dataset:
    """Batches of (float pixels, labels): only indices are shuffled, and each batch's pixels
    are gathered (or decoded) when it is needed, so nothing copies the whole split."""
    size = preprocessor.image_size
    channels = channels_for(preprocessor.color_mode)
    labels = tf.constant(split.labels)

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.numpy_function(
            lambda batch: split.pixels_of(batch, preprocessor), [indices], tf.uint8
        )
        pixels = tf.ensure_shape(pixels, (None, size, size, channels))
        return tf.cast(pixels, tf.float32), tf.gather(labels, indices)

    dataset = tf.data.Dataset.range(len(split.labels))
    if shuffle:
        dataset = dataset.shuffle(len(split.labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(gather)
    if augmentation is not None:
        dataset = dataset.map(
            lambda pixels, labels: (augmentation(pixels, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(PREFETCH_BATCHES)


class BestEpoch(keras.callbacks.Callback):
    """Keep the weights of the best validation epoch (accuracy, then loss), across phases,
    and write them to a checkpoint so a crash keeps the best model so far."""

    def __init__(self, checkpoint_path: Path, classifier: keras.Model):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.classifier = classifier
        """The whole model (also when the head alone is being fitted on cached features)."""
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
            self.best_weights = [np.copy(weight) for weight in self.classifier.get_weights()]
            self.best_epoch = self.epochs_seen
            self.classifier.save_weights(self.checkpoint_path, overwrite=True)

    def restore(self) -> None:
        if self.best_weights is not None:
            self.classifier.set_weights(self.best_weights)


def load_split(
    folder: LabelledFolder, preprocessor: Preprocessor
) -> tuple[LoadedSplit, list[SkippedFile]]:
    """Decode one side of the split, keeping the pixels only if they fit in memory; files that
    fail to load are dropped with their label."""
    if _decoded_bytes(len(folder.paths), preprocessor) <= IN_MEMORY_PIXEL_BYTES:
        loaded = preprocessor.load(folder.paths)
        paths, skipped, pixels = loaded.paths, loaded.skipped, loaded.pixels
    else:
        paths, skipped, pixels = [], [], None
        decoded = iter_images(folder.paths, preprocessor.image_size, preprocessor.color_mode)
        for path, _, skip in decoded:
            if skip is None:
                paths.append(path)
            else:
                skipped.append(skip)
    files = [folder.relative(path) for path in paths]
    return LoadedSplit(paths, folder.labels_of(paths), files, pixels), skipped


def _decoded_bytes(count: int, preprocessor: Preprocessor) -> int:
    return count * preprocessor.image_size**2 * channels_for(preprocessor.color_mode)


def compile_for_phase(model: keras.Model, phase: TrainingPhase, steps_per_epoch: int) -> None:
    """The phase's learning rate (constant, or cosine-decaying to ~0), Adam, accuracy."""
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


@dataclass
class TrainingData:
    """What the phases learn from: the split, how it is fed, and how it is augmented."""

    splits: Splits
    preprocessor: Preprocessor
    batch_size: int
    seed: int
    augmentation: keras.Sequential | None

    def train_dataset(self) -> tf.data.Dataset:
        return make_dataset(
            self.splits.train,
            self.preprocessor,
            self.batch_size,
            self.seed,
            self.augmentation,
            shuffle=True,
        )

    def validation_dataset(self) -> tf.data.Dataset:
        return make_dataset(self.splits.validation, self.preprocessor, self.batch_size, self.seed)


def fit_phases(
    model: keras.Model,
    spec: ModelEntry,
    phases: list[TrainingPhase],
    data: TrainingData,
    best_epoch: BestEpoch,
    verbose: int | str,
) -> tuple[dict[str, list[float]], list[int]]:
    """Run each phase in turn; return the joined per-epoch history and where phases changed."""
    history: dict[str, list[float]] = {}
    boundaries: list[int] = []
    train_dataset, validation_dataset = data.train_dataset(), data.validation_dataset()
    for phase in phases:
        spec.set_trainable(model, phase.trainable)
        if phase.feature_views > 0 and phase.trainable == "head":
            fitted_model = head_model(model, spec.feature_layer)
            phase_train, phase_validation = cached_features(model, spec, phase, data)
        else:
            fitted_model, phase_train, phase_validation = model, train_dataset, validation_dataset
        compile_for_phase(fitted_model, phase, int(phase_train.cardinality()))
        # Progress is for people: send it to stderr so stdout stays pipe-friendly.
        with contextlib.redirect_stdout(sys.stderr):
            result = fitted_model.fit(
                phase_train,
                validation_data=phase_validation,
                epochs=phase.epochs,
                callbacks=[best_epoch],
                shuffle=False,  # the tf.data pipeline shuffles, seeded
                verbose=verbose,
            )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(value) for value in values)
        boundaries.append(len(history.get("loss", [])))
    return history, boundaries[:-1]


def head_model(model: keras.Model, feature_layer: str) -> keras.Model:
    """The layers after `feature_layer` as a model of their own, sharing their weights with
    `model`: training it trains the classifier's head."""
    names = [layer.name for layer in model.layers]
    head_layers = model.layers[names.index(feature_layer) + 1 :]
    features = keras.Input(shape=model.get_layer(feature_layer).output.shape[1:], name="features")
    outputs = features
    for layer in head_layers:
        outputs = layer(outputs)
    return keras.Model(features, outputs, name="head")


def cached_features(
    model: keras.Model, spec: ModelEntry, phase: TrainingPhase, data: TrainingData
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The frozen backbone's features, computed once: `phase.feature_views` views of every
    training image (the first as it is, the others augmented) and each validation image as
    it is. A head epoch on them costs milliseconds instead of a full backbone pass."""
    extractor = keras.Model(model.input, model.get_layer(spec.feature_layer).output)
    plain = replace(data, augmentation=None)
    views = [plain.train_dataset()]
    if data.augmentation is not None:
        views += [data.train_dataset() for _ in range(phase.feature_views - 1)]
    forward = traced_inference(extractor)
    train_features, train_labels = zip(*(_features_of(forward, view) for view in views))
    validation_features, validation_labels = _features_of(forward, plain.validation_dataset())
    train = tf.data.Dataset.from_tensor_slices(
        (np.concatenate(train_features), np.concatenate(train_labels))
    )
    train = train.shuffle(len(train), seed=data.seed, reshuffle_each_iteration=True)
    validation = tf.data.Dataset.from_tensor_slices((validation_features, validation_labels))
    batch_size = data.batch_size
    return train.batch(batch_size), validation.batch(batch_size)


def _features_of(forward: Any, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for pixels, batch_labels in dataset:
        features.append(np.asarray(forward(pixels)))
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)


def train(config: TrainingConfig) -> dict[str, Any]:
    """Pick the recipe, train, keep the best epoch, evaluate on validation, write the run."""
    if config.model is not None:
        get_model_entry(config.model)  # a typo fails before any folder is read
    if config.recipe is not None:
        get_recipe(config.recipe)
    folder = scan_labelled_folder(config.data)
    settings = resolve_settings(config, folder)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    train_indices, validation_indices = stratified_split(
        folder.labels, config.val_split, config.seed
    )
    with RunFolder(config.out).staged(config.overwrite) as run:
        print(describe_choice(settings.recipe, settings.reason), file=sys.stderr)
        metrics = _train_into(run, settings, config, folder, train_indices, validation_indices)
    return metrics


def _train_into(
    run: RunFolder,
    settings: Settings,
    config: TrainingConfig,
    folder: LabelledFolder,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
) -> dict[str, Any]:
    """A run, step by step, written into the (staging) run folder; returns its metrics."""
    built = build_model(settings, config, len(folder.class_names))
    preprocessor = make_preprocessor(settings, folder, built.weights_description)
    splits = load_splits(folder, train_indices, validation_indices, preprocessor)
    run.write_split(split_record(folder, splits, config))
    data = training_data(splits, preprocessor, settings, config)
    fitted = fit(built.model, settings, data, run, config.verbose)
    validation = evaluate_validation(built.model, data, folder.class_names)
    metrics = run_metrics(settings, config, folder, splits, built, fitted, validation)
    write_run(run, built.model, preprocessor, metrics, fitted.phase_boundaries)
    return metrics


def build_model(settings: Settings, config: TrainingConfig, num_classes: int) -> BuiltModel:
    """A pretrained model starts from the best weights found offline unless told otherwise."""
    weights = config.weights
    if weights is None and settings.spec.pretrained:
        weights = "auto"
    return settings.spec.build(num_classes, image_size=settings.image_size, weights=weights)


def make_preprocessor(
    settings: Settings, folder: LabelledFolder, weights_description: str
) -> Preprocessor:
    """How files become model input, saved inside model.keras so predict feeds the same."""
    return Preprocessor(
        model_name=settings.spec.name,
        class_names=folder.class_names,
        image_size=settings.image_size,
        color_mode=settings.spec.color_mode,
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


def training_data(
    splits: Splits, preprocessor: Preprocessor, settings: Settings, config: TrainingConfig
) -> TrainingData:
    """Shuffled, augmented training batches; validation batches as they are."""
    augmentation = None
    if config.augment:
        augmentation = build_augmentation(settings.recipe.augmentation, settings.flip, config.seed)
    return TrainingData(splits, preprocessor, settings.batch_size, config.seed, augmentation)


def fit(
    model: keras.Model, settings: Settings, data: TrainingData, run: RunFolder, verbose: int | str
) -> FitResult:
    """Run every phase, then put the best validation epoch's weights back into the model."""
    best_epoch = BestEpoch(run.best_checkpoint_path, model)
    best_epoch.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    if verbose == "auto":
        verbose = 1 if sys.stderr.isatty() else 2
    started = time.perf_counter()
    history, boundaries = fit_phases(
        model, settings.spec, settings.phases, data, best_epoch, verbose
    )
    train_seconds = time.perf_counter() - started
    best_epoch.restore()
    return FitResult(history, boundaries, best_epoch.best_epoch, train_seconds)


def evaluate_validation(
    model: keras.Model, data: TrainingData, class_names: list[str]
) -> dict[str, Any]:
    """Validation metrics of the final model, batch by batch (bounded memory)."""
    forward = traced_inference(model)
    probabilities = [np.asarray(forward(pixels)) for pixels, _ in data.validation_dataset()]
    return classification_metrics(
        data.splits.validation.labels, np.concatenate(probabilities), class_names
    )


def run_metrics(
    settings: Settings,
    config: TrainingConfig,
    folder: LabelledFolder,
    splits: Splits,
    built: BuiltModel,
    fitted: FitResult,
    validation: dict[str, Any],
) -> dict[str, Any]:
    """Everything metrics.json records: the settings (to repeat the run) and the results."""
    return {
        "model": settings.spec.name,
        "recipe": settings.recipe.name,
        "recipe_reason": settings.reason,
        "data": str(folder.root),
        "classes": folder.class_names,
        "epochs": sum(phase.epochs for phase in settings.phases),
        "phases": [phase.__dict__ for phase in settings.phases],
        "best_epoch": fitted.best_epoch,
        "train_size": len(splits.train.labels),
        "val_size": len(splits.validation.labels),
        "val_split": config.val_split,
        "seed": config.seed,
        "image_size": settings.image_size,
        "color_mode": settings.spec.color_mode,
        "batch_size": settings.batch_size,
        "augment": config.augment,
        "augmentation": settings.recipe.augmentation if config.augment else "none",
        "flip": settings.flip,
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
