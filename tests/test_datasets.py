"""Labelled folders, the stratified split, and MNIST written as folders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from foldervision.datasets import (
    read_idx,
    read_mnist,
    scan_labelled_folder,
    stratified_split,
    write_mnist_folders,
)
from foldervision.errors import AlreadyExistsError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_scan_finds_sorted_classes_and_their_files(sample_digits):
    folder = scan_labelled_folder(sample_digits / "train")
    assert folder.class_names == ["0", "1", "2"]
    assert folder.class_counts() == {"0": 200, "1": 200, "2": 200}
    assert all(
        path.parent.name == folder.class_names[label]
        for path, label in zip(folder.paths, folder.labels)
    )


@pytest.mark.parametrize("seed", [0, 42, 2024])
@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_split_is_stratified_disjoint_complete_and_repeatable(seed, fraction):
    labels = np.repeat(np.arange(3), [50, 80, 7])
    train, validation = stratified_split(labels, fraction, seed)
    assert not set(train) & set(validation)
    assert sorted([*train, *validation]) == list(range(len(labels)))
    for label, count in zip(range(3), [50, 80, 7]):
        in_validation = int((labels[validation] == label).sum())
        assert abs(in_validation - count * fraction) <= 1
    again_train, again_validation = stratified_split(labels, fraction, seed)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(validation, again_validation)


def test_different_seeds_give_different_splits():
    labels = np.repeat(np.arange(2), 100)
    assert not np.array_equal(
        stratified_split(labels, 0.2, 1)[1], stratified_split(labels, 0.2, 2)[1]
    )


def test_tiny_class_still_gets_one_image_each_side():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    train, validation = stratified_split(labels, 0.2, 0)
    assert (labels[train] == 0).sum() == 1 and (labels[validation] == 0).sum() == 1


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no image files|0 class"),
        ({"only": 3}, "at least 2"),
        ({"a": 3, "b": 1}, "'b' has 1"),
        ({"a": 0, "b": 0}, "no image files"),
    ],
)
def test_user_errors_are_one_clear_line(tmp_path, layout, message):
    from PIL import Image

    for name, count in layout.items():
        (tmp_path / name).mkdir()
        for index in range(count):
            Image.new("L", (8, 8), index * 10).save(tmp_path / name / f"{index}.png")
    with pytest.raises(ValueError, match=message) as error:
        scan_labelled_folder(tmp_path)
    assert "\n" not in str(error.value)


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="folder not found"):
        scan_labelled_folder(tmp_path / "nope")


def test_read_idx_round_trip_and_truncation(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    payload = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 2, 3, 4) + images.tobytes()
    (tmp_path / "ok.gz").write_bytes(gzip.compress(payload))
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), images)
    (tmp_path / "short.gz").write_bytes(gzip.compress(payload[:-5]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short.gz")


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="needs ../shared/data/mnist")
def test_canonical_mnist_counts_and_folder_writer(tmp_path):
    splits = read_mnist(SHARED_MNIST)
    assert splits["train"][0].shape == (60000, 28, 28)
    assert [(splits["test"][1] == digit).sum() for digit in (0, 1, 2)] == [980, 1135, 1032]
    counts = write_mnist_folders(tmp_path / "d", SHARED_MNIST, [0, 1, 2], 3, 2)
    assert counts == {"train": {"0": 3, "1": 3, "2": 3}, "test": {"0": 2, "1": 2, "2": 2}}
    assert len(list((tmp_path / "d" / "train" / "1").glob("*.png"))) == 3
    with pytest.raises(AlreadyExistsError, match="train: a data folder already exists here"):
        write_mnist_folders(tmp_path / "d", SHARED_MNIST, [0, 1], 3, 2)
