"""Write the sample `images_database/` and `query_images/` folders from MNIST (rerunnable).

The database holds the first 30 training images of each of the digits 0, 1 and 2; the queries are
two TEST images per digit, so none of them is in the database (as in the assignment). Formats
alternate between PNG and JPEG to exercise both decoders. Query names: q1/q2 show a 0,
q3/q4 a 1, q5/q6 a 2.

    python scripts/make_retrieval_samples.py [--mnist ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from foldervision.datasets import read_mnist
from foldervision.images import list_image_files, save_image_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
DIGITS = (0, 1, 2)
DATABASE_IMAGES_PER_DIGIT = 30
QUERIES_PER_DIGIT = 2
FORMATS = (".png", ".jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=str(REPO_ROOT.parent / "shared" / "data" / "mnist"),
                        help="Folder with the four MNIST IDX .gz files.")  # fmt: skip
    parser.add_argument("--out", default=str(REPO_ROOT), help="Where the two folders go.")
    arguments = parser.parse_args()
    splits = read_mnist(arguments.mnist)
    out = Path(arguments.out)
    write_database(out / "images_database", *splits["train"])
    write_queries(out / "query_images", *splits["test"])


def write_database(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """`<digit>_train<index>.<ext>`: the digit is in the name, for checking results by eye."""
    _empty(folder)
    for digit in DIGITS:
        for number, index in enumerate(_first_of(labels, digit, DATABASE_IMAGES_PER_DIGIT)):
            extension = FORMATS[number % len(FORMATS)]
            save_image_atomic(images[index], folder / f"{digit}_train{index:05d}{extension}")
    print(f"{folder}: {len(list_image_files(folder))} images")


def write_queries(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    _empty(folder)
    number = 0
    for digit in DIGITS:
        for index in _first_of(labels, digit, QUERIES_PER_DIGIT):
            extension = FORMATS[number % len(FORMATS)]
            number += 1
            save_image_atomic(images[index], folder / f"q{number}{extension}")
    print(f"{folder}: {len(list_image_files(folder))} images")


def _first_of(labels: np.ndarray, digit: int, count: int) -> np.ndarray:
    return np.flatnonzero(labels == digit)[:count]


def _empty(folder: Path) -> None:
    """Remove the images (and the stale index) a previous run wrote; leave anything else alone."""
    if folder.is_dir():
        for path in list_image_files(folder, recursive=False):
            path.unlink()
        shutil.rmtree(folder / ".foldervision", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main()
