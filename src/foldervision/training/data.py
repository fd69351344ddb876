"""The data a run learns from: the split, decoded files, and the tf.data pipeline over them.

Memory stays bounded whatever the folder's size: decoded pixels are held in memory only while
they fit in `IN_MEMORY_PIXEL_BYTES`; beyond that, each batch is decoded from its files as
training goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from foldervision.datasets import LabelledFolder
from foldervision.images import SkippedFile, channels_for, iter_images
from foldervision.models.saving import Preprocessor
from foldervision.training.augmentation import build_augmentation
from foldervision.training.settings import Settings

IN_MEMORY_PIXEL_BYTES = 256 * 2**20
"""Decoded pixels of a split are kept in memory up to this size (all of MNIST at 28 px is
15 MB); a bigger split is decoded batch by batch from its files, so memory stays flat."""

PREFETCH_BATCHES = 2
"""Batches prepared ahead of the one training: enough to overlap decoding, and bounded."""


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


@dataclass
class Splits:
    """Both sides of the split, decoded, and the files that could not be read."""

    train: LoadedSplit
    validation: LoadedSplit
    skipped: list[SkippedFile]


def make_preprocessor(settings: Settings, weights_description: str) -> Preprocessor:
    """How files become model input, saved inside model.keras so predict feeds the same."""
    return Preprocessor(
        model_name=settings.model_entry.name,
        class_names=settings.folder.class_names,
        image_size=settings.image_size,
        color_mode=settings.model_entry.color_mode,
        extra={"weights": weights_description},
    )


def load_splits(settings: Settings, preprocessor: Preprocessor) -> Splits:
    """Decode both sides of the split, drop unreadable files, and check every class is left
    on both sides."""
    folder = settings.folder
    train_split, train_skipped = load_split(folder.subset(settings.train_indices), preprocessor)
    validation_split, validation_skipped = load_split(
        folder.subset(settings.validation_indices), preprocessor
    )
    splits = Splits(train_split, validation_split, train_skipped + validation_skipped)
    _check_loaded(splits, folder)
    return splits


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


def _check_loaded(splits: Splits, folder: LabelledFolder) -> None:
    for name, split in (("training", splits.train), ("validation", splits.validation)):
        missing = sorted(set(range(len(folder.class_names))) - set(split.labels.tolist()))
        if missing:
            names = [folder.class_names[index] for index in missing]
            raise ValueError(
                f"{folder.root}: after skipping unreadable files, the {name} split has no images "
                f"of class(es) {names}; add readable images to those subfolders."
            )


def split_record(settings: Settings, splits: Splits) -> dict[str, Any]:
    """Which file went where (paths relative to the data folder), for split.json."""
    return {
        "data": str(settings.folder.root),
        "seed": settings.seed,
        "val_split": settings.val_split,
        "classes": settings.folder.class_names,
        "train": [
            [path, int(label)] for path, label in zip(splits.train.files, splits.train.labels)
        ],
        "validation": [
            [path, int(label)]
            for path, label in zip(splits.validation.files, splits.validation.labels)
        ],
    }


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


@dataclass
class TrainingData:
    """What the phases learn from: the split, how it is fed, and how it is augmented."""

    splits: Splits
    preprocessor: Preprocessor
    batch_size: int
    seed: int
    augmentation: keras.Sequential | None

    def train_dataset(self, shuffle: bool = True) -> tf.data.Dataset:
        """Augmented training batches; in the split's order with shuffle=False (views of the
        same images that must line up)."""
        return make_dataset(
            self.splits.train,
            self.preprocessor,
            self.batch_size,
            self.seed,
            self.augmentation,
            shuffle=shuffle,
        )

    def validation_dataset(self) -> tf.data.Dataset:
        return make_dataset(self.splits.validation, self.preprocessor, self.batch_size, self.seed)


def training_data(splits: Splits, preprocessor: Preprocessor, settings: Settings) -> TrainingData:
    """Shuffled, augmented training batches; validation batches as they are."""
    augmentation = None
    if settings.augmentation is not None:
        augmentation = build_augmentation(settings.augmentation, settings.flip, settings.seed)
    return TrainingData(splits, preprocessor, settings.batch_size, settings.seed, augmentation)
