"""`foldervision data mnist` from IDX files the test writes: the folders and PNGs a user gets."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from image_fixtures import real_digit
from PIL import Image
from user_process import run_cli

TRAIN_LABELS = [0, 1, 7, 1, 0, 2, 1]
TEST_LABELS = [2, 0, 1, 7]
"""MNIST order; the 7s and 2s are in the files but not among the digits asked for."""


def idx_bytes(values: np.ndarray) -> bytes:
    """LeCun's IDX format: zero, zero, 0x08 (unsigned byte), the rank, then each dimension."""
    header = struct.pack(">BBBB", 0, 0, 0x08, values.ndim)
    return header + struct.pack(f">{values.ndim}I", *values.shape) + values.tobytes()


def digit_images(labels: list[int]) -> np.ndarray:
    """Real 28x28 handwritten digits; a stand-in for digits the samples lack (7) is a 2."""
    return np.stack(
        [np.asarray(real_digit(min(label, 2), index)) for index, label in enumerate(labels)]
    )


def write_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir()
    images = {"train": digit_images(TRAIN_LABELS), "test": digit_images(TEST_LABELS)}
    names = {"train": "train", "test": "t10k"}
    for split, labels in (("train", TRAIN_LABELS), ("test", TEST_LABELS)):
        prefix = names[split]
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(images[split]))
        )
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(np.array(labels, np.uint8)))
        )
    return images


def folder_listing(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*.png"))


def test_mnist_from_idx_files_writes_one_png_folder_per_digit(tmp_path: Path) -> None:
    images = write_idx_folder(tmp_path / "idx")

    result = run_cli(
        "data", "mnist", "--out", "digits", "--source", "idx", "--digits", "0", "1",
        "--train-per-class", "2", cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout == "digits\n"
    assert result.stderr.splitlines() == [
        "digits/train: 4 images (0: 2, 1: 2)",
        "digits/test: 2 images (0: 1, 1: 1)",
    ]
    out = tmp_path / "digits"
    assert folder_listing(out) == [
        "test/0/test_00001.png",
        "test/1/test_00002.png",
        "train/0/train_00000.png",
        "train/0/train_00004.png",
        "train/1/train_00001.png",
        "train/1/train_00003.png",
    ]  # the first two 1s of train only: the third (index 6) is past --train-per-class
    for path in out.rglob("*.png"):
        split, _, name = path.relative_to(out).parts
        index = int(name.removesuffix(".png").split("_")[1])
        with Image.open(path) as written:
            assert written.mode == "L" and written.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(written), images[split][index])


def test_mnist_refuses_to_replace_folders_it_wrote_unless_asked(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "idx")
    first = run_cli("data", "mnist", "--out", "d", "--source", "idx", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = folder_listing(tmp_path / "d")

    again = run_cli("data", "mnist", "--out", "d", "--source", "idx", "--digits", "2", cwd=tmp_path)

    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.splitlines() == [
        "error: d/train: a data folder already exists here; pass --overwrite to replace it, or "
        "choose another --out."
    ]
    assert folder_listing(tmp_path / "d") == before
    assert [path.split("/")[1] for path in before if path.startswith("train/")] == [
        "0", "0", "1", "1", "1", "2",
    ]  # fmt: skip
