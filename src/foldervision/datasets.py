"""Labelled image folders (a subfolder per class), seeded stratified splits, MNIST as folders."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldervision.errors import AlreadyExistsError
from foldervision.images import IMAGE_EXTENSIONS, list_image_files, save_image_atomic

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
"""The usual public mirror of the canonical MNIST IDX files (used only when online)."""

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

MIN_IMAGES_PER_CLASS = 2
"""A class needs one image for training and one for validation at the very least."""


@dataclass(frozen=True)
class LabelledFolder:
    """The image files of a class-per-subfolder folder, with labels as indices into class_names."""

    root: Path
    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def subset(self, indices: np.ndarray) -> LabelledFolder:
        return LabelledFolder(
            self.root, [self.paths[i] for i in indices], self.labels[indices], self.class_names
        )

    def labels_of(self, paths: list[Path]) -> np.ndarray:
        """Labels of some of this folder's files (e.g. the ones that decoded), in their order."""
        label_by_path = dict(zip(self.paths, self.labels))
        return np.asarray([label_by_path[path] for path in paths], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, counts)}


def scan_labelled_folder(
    folder: str | os.PathLike[str],
    class_names: list[str] | None = None,
    min_images_per_class: int = MIN_IMAGES_PER_CLASS,
) -> LabelledFolder:
    """Find the classes (sorted subfolder names) and their image files.

    With `class_names` (a trained model's classes), subfolders are matched against that list so
    labels keep the model's order; a subfolder the model does not know is an error.
    """
    root = Path(folder)
    if not root.exists():
        raise ValueError(f"{root}: folder not found. Pass a folder with one subfolder per class.")
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder. Pass a folder with one subfolder per class.")
    subfolders = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if class_names is None:
        class_names = subfolders
        if len(class_names) < 2:
            raise ValueError(
                f"{root}: found {len(class_names)} class subfolder(s); a classifier needs at "
                "least 2. Put each class's images in its own subfolder."
            )
    else:
        unknown = sorted(set(subfolders) - set(class_names))
        if unknown:
            raise ValueError(
                f"{root}: subfolder(s) {unknown} are not classes of this model "
                f"({class_names}); remove them or evaluate on a matching folder."
            )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        class_folder = root / name
        files = list_image_files(class_folder) if class_folder.is_dir() else []
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise ValueError(
            f"{root}: no image files found in its class subfolders "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    labelled = LabelledFolder(root, paths, np.asarray(labels, dtype=np.int64), list(class_names))
    _check_class_sizes(labelled, min_images_per_class)
    return labelled


def _check_class_sizes(labelled: LabelledFolder, min_images_per_class: int) -> None:
    too_small = {
        name: count
        for name, count in labelled.class_counts().items()
        if count < min_images_per_class
    }
    if too_small:
        listing = ", ".join(f"{name!r} has {count}" for name, count in too_small.items())
        raise ValueError(
            f"{labelled.root}: {listing} image(s); each class needs at least "
            f"{min_images_per_class}. Add images or remove the class subfolder."
        )


def stratified_split(
    labels: np.ndarray, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split: the same labels and seed always give the same, disjoint halves.

    Each class keeps at least one image on each side, so every class is both learned and checked.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"--val-split must be between 0 and 1 (got {validation_fraction}).")
    generator = np.random.default_rng(seed)
    train_indices: list[np.ndarray] = []
    validation_indices: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        generator.shuffle(members)
        validation_count = int(round(len(members) * validation_fraction))
        validation_count = min(max(validation_count, 1), len(members) - 1)
        validation_indices.append(members[:validation_count])
        train_indices.append(members[validation_count:])
    return np.sort(np.concatenate(train_indices)), np.sort(np.concatenate(validation_indices))


# --- MNIST -----------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzip or plain): unsigned-byte images or labels, as in LeCun's format."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read IDX file ({error}); download it again.") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file; is this really MNIST?")
    dimensions = data[3]
    shape = struct.unpack(f">{dimensions}I", data[4 : 4 + 4 * dimensions])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file (expected shape {shape}); download it again.")
    return values.reshape(shape)


def read_mnist(source: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as {"train": (images, labels), "test": (images, labels)} from a folder or a URL.

    A URL (http/https) is downloaded once into the foldervision cache; a folder is read in place.
    """
    folder = _mnist_folder(str(source))
    splits = {}
    for split, (images_name, labels_name) in MNIST_FILES.items():
        images = read_idx(_find(folder, images_name))
        labels = read_idx(_find(folder, labels_name))
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {split} images and labels differ in count.")
        splits[split] = (images, labels)
    return splits


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.exists():
            return candidate
    raise ValueError(
        f"{folder / name}: missing. The MNIST source folder needs the four canonical IDX files "
        f"({', '.join(name for pair in MNIST_FILES.values() for name in pair)})."
    )


def _mnist_folder(source: str) -> Path:
    if not source.startswith(("http://", "https://")):
        return Path(source)
    from foldervision.cache import cache_directory

    folder = cache_directory() / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (name for pair in MNIST_FILES.values() for name in pair):
        target = folder / name
        if target.exists():
            continue
        url = source.rstrip("/") + "/" + name
        temporary = target.with_name(f".{name}.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise ValueError(
                f"{url}: download failed ({error}). When offline, pass --source with a folder "
                "that holds the MNIST IDX files."
            ) from error
        os.replace(temporary, target)
    return folder


def write_mnist_folders(
    out: str | os.PathLike[str],
    source: str | os.PathLike[str],
    digits: list[int],
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Write MNIST digits as OUT/train/<digit>/*.png and OUT/test/<digit>/*.png.

    `*_per_class` keeps the first N of each digit (in MNIST order), for small samples.
    Returns {split: {digit: count}}.
    """
    out = Path(out)
    for split in MNIST_FILES:
        existing = out / split
        if existing.exists() and any(existing.iterdir()) and not overwrite:
            raise AlreadyExistsError(f"{existing}: a data folder already exists here")
    unknown = sorted(set(digits) - set(range(10)))
    if unknown:
        raise ValueError(f"--digits: {unknown} are not digits 0-9.")
    counts: dict[str, dict[str, int]] = {}
    limits = {"train": train_per_class, "test": test_per_class}
    for split, (images, labels) in read_mnist(source).items():
        target = out / split
        if target.exists():
            shutil.rmtree(target)
        counts[split] = {}
        for digit in digits:
            indices = np.flatnonzero(labels == digit)[: limits[split]]
            for index in indices:
                save_image_atomic(images[index], target / str(digit) / f"{split}_{index:05d}.png")
            counts[split][str(digit)] = len(indices)
    return counts
