"""The persistent index: what gets embedded, incremental updates, model mismatch, resuming."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from foldervision.errors import IndexMismatchError
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.index import ImageIndex, default_index_path
from foldervision.retrieval.settings import IndexSettings


def count_embedded_rows(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> list[int]:
    """Record how many images each forward pass gets, to prove what was (not) recomputed."""
    calls: list[int] = []
    original = embedder.embed_pixels

    def counting(pixels: np.ndarray) -> np.ndarray:
        calls.append(len(pixels))
        return original(pixels)

    monkeypatch.setattr(embedder, "embed_pixels", counting)
    return calls


def test_index_embeds_readable_files_and_records_broken_ones(
    photo_folder: Path, embedder: Embedder, readable_photos: list[str], broken_photos: list[str]
) -> None:
    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        update = index.update(embedder)
        indexed = index.vectors()
        skipped = index.skipped_files()

    assert sorted(update.embedded) == readable_photos
    assert sorted(Path(skip.path).name for skip in update.skipped) == broken_photos
    assert sorted(Path(skip.path).name for skip in skipped) == broken_photos
    assert all(str(photo_folder) in skip.reason for skip in skipped)  # names the file
    assert [path.name for path in indexed.paths] == readable_photos
    assert indexed.vectors.shape == (len(readable_photos), 1280)
    np.testing.assert_allclose(np.linalg.norm(indexed.vectors, axis=1), 1.0, atol=1e-3)  # fp16
    assert default_index_path(photo_folder).is_file()


def test_unchanged_folder_is_not_embedded_again(
    photo_folder: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    readable_photos: list[str],
    broken_photos: list[str],
) -> None:
    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        index.update(embedder)
    calls = count_embedded_rows(monkeypatch, embedder)

    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        update = index.update(embedder)

    assert calls == []
    assert update.embedded == [] and update.removed == [] and update.skipped == []
    assert update.unchanged == len(readable_photos) + len(broken_photos)


def test_update_embeds_only_added_and_changed_files_and_drops_deleted(
    photo_folder: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    readable_photos: list[str],
) -> None:
    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        index.update(embedder)
    (photo_folder / "sub folder").mkdir()
    shutil.copy(photo_folder / "Coffee.PNG", photo_folder / "sub folder" / "added.png")
    shutil.copy(photo_folder / "astronaut.jpg", photo_folder / "chelsea.jpeg")  # changed content
    stat = (photo_folder / "chelsea.jpeg").stat()
    os.utime(photo_folder / "chelsea.jpeg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (photo_folder / "ROCKET.BMP").unlink()
    calls = count_embedded_rows(monkeypatch, embedder)

    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        update = index.update(embedder)
        indexed = index.vectors()

    assert sorted(update.embedded) == ["chelsea.jpeg", "sub folder/added.png"]
    assert sum(calls) == 2
    assert update.removed == ["ROCKET.BMP"]
    vectors = dict(zip((index.relative(path) for path in indexed.paths), indexed.vectors))
    assert "ROCKET.BMP" not in vectors and len(vectors) == len(readable_photos)
    np.testing.assert_allclose(vectors["chelsea.jpeg"], vectors["astronaut.jpg"], atol=1e-5)
    np.testing.assert_allclose(vectors["sub folder/added.png"], vectors["Coffee.PNG"], atol=1e-5)


def test_index_built_with_another_model_is_refused_until_rebuilt(
    photo_folder: Path, embedder: Embedder
) -> None:
    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        index.update(embedder)
    other_spec = dataclasses.replace(embedder.spec, image_size=embedder.spec.image_size + 32)

    with pytest.raises(IndexMismatchError, match="don't compare") as error:
        ImageIndex.open(IndexSettings(photo_folder), other_spec)
    assert str(default_index_path(photo_folder)) in str(error.value)

    with ImageIndex.open(IndexSettings(photo_folder), other_spec, rebuild=True) as index:
        assert len(index) == 0
        assert index.stored_spec() == other_spec


def test_interrupted_run_resumes_with_every_file_exactly_once(
    photo_folder: Path,
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    readable_photos: list[str],
) -> None:
    clean_index_path = tmp_path / "clean.sqlite"
    clean = IndexSettings(photo_folder, index_path=clean_index_path)
    with ImageIndex.open(clean, embedder.spec) as index:
        index.update(embedder, batch_size=2)
        clean = index.vectors()

    original = embedder.embed_pixels
    batches_before_crash = 2

    def crash_after_two_batches(pixels: np.ndarray) -> np.ndarray:
        if len(calls) == batches_before_crash:
            raise KeyboardInterrupt
        calls.append(len(pixels))
        return original(pixels)

    calls: list[int] = []
    monkeypatch.setattr(embedder, "embed_pixels", crash_after_two_batches)
    with (
        pytest.raises(KeyboardInterrupt),
        ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index,
    ):
        index.update(embedder, batch_size=2)
    monkeypatch.setattr(embedder, "embed_pixels", original)
    with ImageIndex.open(IndexSettings(photo_folder), embedder.spec) as index:
        assert 0 < len(index) < len(readable_photos)  # the finished batches were kept
        update = index.update(embedder, batch_size=2)
        resumed = index.vectors()

    assert len(update.embedded) == len(readable_photos) - sum(calls)
    assert resumed.paths == clean.paths
    np.testing.assert_allclose(resumed.vectors, clean.vectors, atol=1e-5)
    with sqlite3.connect(default_index_path(photo_folder)) as connection:
        files = connection.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM files").fetchone()
        vectors = connection.execute(
            "SELECT COUNT(*) FROM vectors JOIN files USING (id)"
        ).fetchone()
    assert files == (len(readable_photos), len(readable_photos))
    assert vectors == (len(readable_photos),)


def test_missing_database_folder_is_a_one_line_error(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        ImageIndex.open(IndexSettings(tmp_path / "missing"), embedder.spec)
