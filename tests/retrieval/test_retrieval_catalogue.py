"""The catalogue and the default store with a network-free embedder: ids, stores, migration."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder

from foldervision.images import save_image_atomic
from foldervision.retrieval.catalogue import Catalogue, FileState, IdSummary
from foldervision.retrieval.index import ImageIndex, default_index_path
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import StoreLocation


def write_colour_folder(folder: Path, count: int = 6) -> list[str]:
    """Solid-colour PNGs whose colour-layout vectors are all different."""
    names = []
    for number in range(count):
        pixels = np.zeros((16, 16, 3), np.uint8)
        pixels[..., number % 3] = 40 * (number + 1)
        pixels[:8, :, (number + 1) % 3] = 200
        names.append(f"colour_{number}.png")
        save_image_atomic(pixels, folder / names[-1])
    return names


def ids_by_path(index: ImageIndex) -> dict[str, int]:
    return {path: file_id for file_id, path in index.catalogue.files()}


def test_ids_stay_with_their_file_across_updates_and_are_never_reused(tmp_path: Path) -> None:
    embedder = colour_layout_embedder()
    names = write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        first = ids_by_path(index)
    changed = tmp_path / names[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    (tmp_path / names[1]).unlink()
    write_colour_folder(tmp_path / "more", count=1)

    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        update = index.update(embedder)
        second = ids_by_path(index)

    assert update.embedded == [names[0], "more/colour_0.png"] and update.removed == [names[1]]
    assert second[names[0]] == first[names[0]]  # re-embedded, same id
    assert second["more/colour_0.png"] > max(first.values())  # a removed id is not reused
    assert {path: second[path] for path in names[2:]} == {path: first[path] for path in names[2:]}


def test_search_answers_paths_of_the_stored_ids_nearest_first(tmp_path: Path) -> None:
    embedder = colour_layout_embedder()
    names = write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        query = index.vector_of(names[3])
        [neighbours] = index.search(query, k=3)

    assert neighbours[0] == (names[3], pytest.approx(0.0, abs=1e-6))
    distances = [distance for _, distance in neighbours]
    assert distances == sorted(distances) and len(neighbours) == 3


def test_a_store_that_lost_vectors_gets_them_back_on_the_next_update(tmp_path: Path) -> None:
    """What a crash between an external store's write and the catalogue's commit leaves."""
    embedder = colour_layout_embedder()
    names = write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        lost = ids_by_path(index)[names[2]]
    with sqlite3.connect(default_index_path(tmp_path)) as connection:
        connection.execute("DELETE FROM vectors WHERE id = ?", (lost,))
        connection.execute("INSERT INTO vectors VALUES (9999, ?)", (b"\0" * 4 * 48,))  # orphan

    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        update = index.update(embedder)
        assert update.embedded == [names[2]]
        assert sorted(index.store.ids().tolist()) == sorted(index.catalogue.ids().tolist())
        assert len(index.vectors().paths) == len(names)


def test_an_index_of_schema_1_is_migrated_without_embedding_again(tmp_path: Path) -> None:
    embedder = colour_layout_embedder()
    names = write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        expected = index.vectors()
    _downgrade_to_schema_1(default_index_path(tmp_path))

    embedder.calls.clear()
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        update = index.update(embedder)
        migrated = index.vectors()

    assert embedder.calls == [] and update.embedded == [] and update.unchanged == len(names)
    assert migrated.paths == expected.paths
    np.testing.assert_array_equal(migrated.vectors, expected.vectors)


def _downgrade_to_schema_1(index_path: Path) -> None:
    """Rewrite an index the way foldervision 0.1 laid it out: vectors in `images`, by path."""
    with sqlite3.connect(index_path) as connection:
        connection.executescript(
            "CREATE TABLE images (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, vector BLOB NOT NULL);"
            "INSERT INTO images SELECT path, size, mtime_ns, vector FROM files JOIN vectors "
            "USING (id);"
            "DROP TABLE files; DROP TABLE vectors; DELETE FROM sqlite_sequence;"
        )


def test_unknown_store_names_the_choices() -> None:
    with pytest.raises(ValueError, match="Unknown vector store 'nosuch'; choose one of: faiss, "):
        StoreLocation.parse("nosuch")
    assert StoreLocation.parse("milvus:http://host:19530") == StoreLocation(
        "milvus", "http://host:19530"
    )


def test_id_summaries_follow_every_write_including_outside_writers(tmp_path: Path) -> None:
    embedder = colour_layout_embedder()
    names = write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        (tmp_path / names[0]).unlink()
        (tmp_path / names[1]).write_bytes(b"not an image")  # embedded -> skipped
        index.update(embedder)
        with index.catalogue.transaction():  # replacing a vector keeps its id counted once
            index.store.upsert(index.catalogue.ids()[:1], np.ones((1, 48), np.float32))
        with sqlite3.connect(default_index_path(tmp_path)) as writer:  # no helper
            writer.execute("DELETE FROM vectors WHERE id = 3")
        files = IdSummary.of(index.catalogue.ids().tolist())
        vectors = IdSummary.of(index.store.ids().tolist())
        assert index.catalogue.id_summary("files") == files and files.count == len(names) - 2
        assert index.store.id_summary() == vectors and vectors != files

    with sqlite3.connect(default_index_path(tmp_path)) as connection:  # another program
        connection.execute("INSERT OR REPLACE INTO vectors VALUES (4, ?)", (b"\0" * 4 * 48,))
        assert connection.execute("PRAGMA recursive_triggers").fetchone() == (0,)
    # drift found, dropped, recounted
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        assert index.store.id_summary() == IdSummary.of(index.store.ids().tolist())
        assert index.store.id_summary() == index.catalogue.id_summary()
        assert set(index.store.ids().tolist()) == set(index.catalogue.ids().tolist())


def summary_triggers(index_path: Path) -> set[str]:
    with sqlite3.connect(index_path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {name for (name,) in rows if "_ids_" in name}


def test_bulk_writes_keep_the_summaries_and_triggers_and_a_failed_batch_changes_nothing(
    tmp_path: Path,
) -> None:
    """Recording files and upserting vectors bypass the per-row insert triggers (issue 21):
    the summaries must still match the ids, new and replaced alike, and an error inside a
    batch must leave the triggers and the summaries as they were."""
    embedder = colour_layout_embedder()
    write_colour_folder(tmp_path)
    index_path = default_index_path(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        triggers = summary_triggers(index_path)
        assert {"files_ids_insert", "vectors_ids_insert"} <= triggers
        catalogue, store = index.catalogue, index.store
        state = FileState(size=1, mtime_ns=1)
        with catalogue.transaction():  # two known paths, two new ones (one twice)
            known = [path for _, path in catalogue.files()[:2]]
            ids = catalogue.record_files([(p, state) for p in [*known, "new/a.png", "new/b.png"]])
            store.upsert(np.concatenate([ids, ids[-1:]]), np.ones((5, 48), np.float32))
        assert catalogue.id_summary("files") == IdSummary.of(catalogue.ids().tolist())
        assert store.id_summary() == IdSummary.of(store.ids().tolist())
        assert catalogue.id_summary("files").count == 8 and store.id_summary().count == 8
        assert summary_triggers(index_path) == triggers

        before = (catalogue.id_summary("files"), store.id_summary())
        with pytest.raises(RuntimeError), catalogue.transaction():
            new_ids = catalogue.record_files([("new/c.png", state)])
            store.upsert(new_ids, np.ones((1, 48), np.float32))
            raise RuntimeError("interrupted")
        assert (catalogue.id_summary("files"), store.id_summary()) == before
        assert summary_triggers(index_path) == triggers
        with catalogue.transaction():  # the triggers still count what others write
            catalogue.remove_paths(["new/a.png"])
            store.remove(ids[2:3])
        assert catalogue.id_summary("files") == IdSummary.of(catalogue.ids().tolist())
        assert store.id_summary() == IdSummary.of(store.ids().tolist())
    with sqlite3.connect(index_path) as writer:  # another program, no helper
        writer.execute("INSERT INTO vectors VALUES (99, ?)", (b"\0" * 4 * 48,))
        counted = writer.execute("SELECT count FROM id_summaries WHERE name = 'vectors'")
        assert counted.fetchone() == (8,)


def test_opening_a_consistent_index_reads_no_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = colour_layout_embedder()
    write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
    read: list[str] = []
    monkeypatch.setattr(Catalogue, "ids", lambda self: read.append("catalogue") or [])
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        assert len(index) == 6 and len(index.store) == 6
        assert index.store.stamp().count == 6
    assert read == []


def test_an_index_made_before_id_summaries_is_counted_once_on_open(tmp_path: Path) -> None:
    embedder = colour_layout_embedder()
    write_colour_folder(tmp_path)
    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        index.update(embedder)
        expected = IdSummary.of(index.catalogue.ids().tolist())
    with sqlite3.connect(default_index_path(tmp_path)) as connection:
        for (trigger,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            connection.execute(f"DROP TRIGGER {trigger}")
        connection.execute("DROP TABLE id_summaries")
        connection.execute("DELETE FROM files WHERE id = 1")  # untracked change

    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        update = index.update(embedder)
        assert update.embedded == ["colour_0.png"]
        assert index.catalogue.id_summary() == index.store.id_summary()
        assert index.catalogue.id_summary().count == expected.count
        assert index.catalogue.id_summary() != expected  # colour_0.png has a new id
