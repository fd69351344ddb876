"""Fitting a model phase by phase, and keeping the best validation epoch.

The same code path serves LeNet (one phase, from scratch) and MobileNetV2 (frozen-base head
training, then fine-tuning of the top blocks). A head phase on a frozen backbone learns from
features computed once instead of a full backbone pass per image per epoch.
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

from foldervision.models import BuiltModel, ModelEntry, TrainingPhase
from foldervision.models.saving import traced_inference
from foldervision.training.data import TrainingData
from foldervision.training.probe_head import ProbeHead, fit_probe_head
from foldervision.training.settings import Settings

STEPS_PER_EXECUTION = 16
"""Training steps per compiled call: small models (LeNet) spend most of a step in Python and
dispatch overhead; 16 steps per call made a LeNet epoch 1.75x faster on 2 CPU cores."""


@dataclass
class FitResult:
    """What fitting produced besides the weights: the curves and the chosen epoch."""

    history: dict[str, list[float]]
    phase_boundaries: list[int]
    """Epochs after which a new phase started (where the history plot draws a line)."""
    best_epoch: int
    train_seconds: float
    head_choice: str | None = None
    """With a probe-fitted head: its C, and whether the head alone or fine-tuning was kept."""


def build_model(settings: Settings) -> BuiltModel:
    """The model to train, starting from the weights the settings name."""
    return settings.model_entry.build(
        len(settings.folder.class_names), image_size=settings.image_size, weights=settings.weights
    )


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


def fit(
    model: keras.Model, settings: Settings, data: TrainingData, checkpoint_path: Path
) -> FitResult:
    """Run every phase, then put the best validation epoch's weights back into the model."""
    best_epoch = BestEpoch(checkpoint_path, model)
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    probes: list[ProbeHead] = []
    phase_weights: list[list[np.ndarray]] = []
    history, boundaries = fit_phases(
        model,
        settings.model_entry,
        settings.phases,
        data,
        best_epoch,
        settings.verbose,
        settings.class_weights,
        probes,
        phase_weights,
    )
    train_seconds = time.perf_counter() - started
    share = settings.recipe.fine_tuned_share
    if share is not None and probes and boundaries:
        # WiSE-FT: the probe-fitted head alone and the last fine-tuned epoch, averaged.
        model.set_weights(average_weights(phase_weights[0], phase_weights[-1], share))
        model.save_weights(checkpoint_path, overwrite=True)
        kept_epoch = len(history["loss"])
        choice = describe_head_choice(probes, boundaries, kept_epoch, share)
        return FitResult(history, boundaries, kept_epoch, train_seconds, choice)
    best_epoch.restore()
    choice = describe_head_choice(probes, boundaries, best_epoch.best_epoch)
    return FitResult(history, boundaries, best_epoch.best_epoch, train_seconds, choice)


def average_weights(
    start: list[np.ndarray], end: list[np.ndarray], share: float
) -> list[np.ndarray]:
    """`share` of `end` and the rest of `start`, weight by weight (one architecture)."""
    return [(1 - share) * a + share * b for a, b in zip(start, end, strict=True)]


def describe_head_choice(
    probes: list[ProbeHead],
    boundaries: list[int],
    best_epoch: int,
    fine_tuned_share: float | None = None,
) -> str | None:
    """In words: how the probe head was fitted, and which model the run keeps."""
    if not probes:
        return None
    probe = probes[-1]
    cross_validated = (
        f"C={probe.C:.3g} by cross-validation on the training images "
        f"(held-out score {probe.cv_accuracy:.1%})"
        if not np.isnan(probe.cv_accuracy)
        else f"C={probe.C:.3g} (too few images per class to cross-validate)"
    )
    head_only = not boundaries or best_epoch <= boundaries[0]
    if fine_tuned_share is not None:
        return (
            f"fitted as a linear probe, {cross_validated}; kept the weights averaged: "
            f"{1 - fine_tuned_share:.0%} head alone, {fine_tuned_share:.0%} fine-tuned epoch "
            f"{best_epoch} (WiSE-FT)"
        )
    kept = (
        "kept the head alone (no fine-tuned epoch did better on validation)"
        if head_only
        else f"kept fine-tuned epoch {best_epoch} (better on validation than the head alone)"
    )
    return f"fitted as a linear probe, {cross_validated}; {kept}"


def fit_phases(
    model: keras.Model,
    model_entry: ModelEntry,
    phases: tuple[TrainingPhase, ...],
    data: TrainingData,
    best_epoch: BestEpoch,
    verbose: int,
    class_weights: dict[int, float] | None = None,
    probes: list[ProbeHead] | None = None,
    phase_weights: list[list[np.ndarray]] | None = None,
) -> tuple[dict[str, list[float]], list[int]]:
    """Run each phase in turn; return the joined per-epoch history and where phases changed.
    `class_weights` scale each training image's loss by its class (uneven classes); each
    probe-fitted head is appended to `probes`, and the model's weights at the end of each
    phase to `phase_weights`."""
    history: dict[str, list[float]] = {}
    boundaries: list[int] = []
    train_dataset, validation_dataset = data.train_dataset(), data.validation_dataset()
    for phase in phases:
        model_entry.set_trainable(model, phase.trainable)
        if phase.solver == "probe":
            logs, probe = fit_probe_phase(model, model_entry, phase, data, class_weights)
            if probes is not None:
                probes.append(probe)
            best_epoch.on_epoch_end(0, logs)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            boundaries.append(len(history["loss"]))
            if phase_weights is not None:
                phase_weights.append(model.get_weights())
            continue
        if phase.feature_views > 0 and phase.trainable == "head":
            fitted_model = head_model(model, model_entry.feature_layer)
            phase_train, phase_validation = cached_features(model, model_entry, phase, data)
        else:
            fitted_model, phase_train, phase_validation = model, train_dataset, validation_dataset
        compile_for_phase(fitted_model, phase, int(phase_train.cardinality()))
        # Keras' progress is for people: to stderr, so stdout stays pipe-friendly.
        with contextlib.redirect_stdout(sys.stderr):
            result = fitted_model.fit(
                phase_train,
                validation_data=phase_validation,
                epochs=phase.epochs,
                callbacks=[best_epoch],
                class_weight=class_weights,
                shuffle=False,  # the tf.data pipeline shuffles, seeded
                verbose=verbose,
            )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(value) for value in values)
        boundaries.append(len(history.get("loss", [])))
        if phase_weights is not None:
            phase_weights.append(model.get_weights())
    return history, boundaries[:-1]


def fit_probe_phase(
    model: keras.Model,
    model_entry: ModelEntry,
    phase: TrainingPhase,
    data: TrainingData,
    class_weights: dict[int, float] | None,
) -> tuple[dict[str, float], ProbeHead]:
    """Fit the head as a linear probe on cached features and install it in `model`; return
    the epoch-like logs (loss, accuracy, val_loss, val_accuracy) the best-epoch choice reads,
    and the probe (its C and cross-validated accuracy)."""
    if phase.trainable != "head" or phase.feature_views < 1:
        raise ValueError(
            f"Phase {phase.name!r}: solver 'probe' fits a head on cached features; "
            "give it trainable='head' and feature_views >= 1."
        )
    head = head_model(model, model_entry.feature_layer)
    dense = [layer for layer in head.layers if layer.weights]
    if len(dense) != 1 or not isinstance(dense[0], keras.layers.Dense):
        raise ValueError(f"{model.name}: solver 'probe' needs a head of one Dense layer.")
    features = feature_arrays(model, model_entry, phase, data)
    probe = fit_probe_head(
        features.train, features.train_labels, features.train_images, class_weights, data.seed
    )
    dense[0].set_weights([probe.kernel, probe.bias])
    head.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    logs = _evaluated(head, features.train, features.train_labels, data.batch_size)
    logs |= _evaluated(
        head, features.validation, features.validation_labels, data.batch_size, prefix="val_"
    )
    return logs, probe


def _evaluated(
    head: keras.Model, features: np.ndarray, labels: np.ndarray, batch_size: int, prefix: str = ""
) -> dict[str, float]:
    """The head's loss and accuracy on cached features, named as Keras' fit logs them."""
    logs = head.evaluate(features, labels, batch_size=batch_size, verbose=0, return_dict=True)
    return {f"{prefix}{key}": float(value) for key, value in logs.items()}


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


@dataclass
class FeatureArrays:
    """The frozen backbone's features of every training view and validation image."""

    train: np.ndarray
    train_labels: np.ndarray
    train_images: np.ndarray
    """Which training image (its index in the split) each row is a view of."""
    validation: np.ndarray
    validation_labels: np.ndarray


def feature_arrays(
    model: keras.Model, model_entry: ModelEntry, phase: TrainingPhase, data: TrainingData
) -> FeatureArrays:
    """`phase.feature_views` views of every training image (the first as it is, the others
    augmented) and each validation image as it is, through the frozen backbone once."""
    extractor = keras.Model(model.input, model.get_layer(model_entry.feature_layer).output)
    plain = replace(data, augmentation=None)
    views = [plain.train_dataset(shuffle=False)]
    if data.augmentation is not None:
        views += [data.train_dataset(shuffle=False) for _ in range(phase.feature_views - 1)]
    forward = traced_inference(extractor)
    train_features, train_labels = zip(*(_features_of(forward, view) for view in views))
    validation_features, validation_labels = _features_of(forward, plain.validation_dataset())
    images = np.arange(len(data.splits.train.labels))
    return FeatureArrays(
        np.concatenate(train_features),
        np.concatenate(train_labels),
        np.tile(images, len(views)),
        validation_features,
        validation_labels,
    )


def cached_features(
    model: keras.Model, model_entry: ModelEntry, phase: TrainingPhase, data: TrainingData
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The frozen backbone's features (see feature_arrays), computed once, as batches: a head
    epoch on them costs milliseconds instead of a full backbone pass."""
    features = feature_arrays(model, model_entry, phase, data)
    train = tf.data.Dataset.from_tensor_slices((features.train, features.train_labels))
    train = train.shuffle(len(train), seed=data.seed, reshuffle_each_iteration=True)
    validation = tf.data.Dataset.from_tensor_slices(
        (features.validation, features.validation_labels)
    )
    batch_size = data.batch_size
    return train.batch(batch_size), validation.batch(batch_size)


def _features_of(forward: Any, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for pixels, batch_labels in dataset:
        features.append(np.asarray(forward(pixels)))
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)
