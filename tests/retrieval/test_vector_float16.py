"""The default store keeps float16 vectors: half the disk, distances within 1e-3 of float32, and
an older index's float32 vectors are rewritten in place, all or nothing, never embedded again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from foldervision.retrieval.catalogue import PAGE_BYTES, Catalogue
from foldervision.retrieval.index import ImageIndex, default_index_path
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import StoreLocation
from foldervision.retrieval.stores import faiss as faiss_store


def float32_vectors(embedder, folder: Path, names: list[str]) -> np.ndarray:
    [batch] = embedder.embed_files([folder / name for name in names], batch_size=len(names))
    return batch.vectors.astype(np.float32)


@pytest.mark.parametrize("kind", ["exact", "approximate"])
def test_printed_distances_stay_within_1e_3_of_float32(
    embedder, photo_folder: Path, readable_photos: list[str], kind: str
) -> None:
    """Real MobileNetV2 vectors of real photos: every query against every photo."""
    settings = IndexSettings(photo_folder, store_location=StoreLocation(ann=kind))
    exact = float32_vectors(embedder, photo_folder, readable_photos)
    with ImageIndex.open(settings, embedder.spec) as index:
        index.update(embedder)
        answers = index.search(exact, k=len(readable_photos))
        assert index.store.index_kind() == kind
    blob_bytes = (
        sqlite3.connect(default_index_path(photo_folder))
        .execute("SELECT DISTINCT length(vector) FROM vectors")
        .fetchall()
    )

    assert blob_bytes == [(exact.shape[1] * 15 // 8 + 1,)]  # 15 bits a dimension (+1 byte)
    with sqlite3.connect(default_index_path(photo_folder)) as connection:
        assert connection.execute("PRAGMA page_size").fetchone() == (PAGE_BYTES,)
    for query, answer in zip(exact, answers):
        assert len(answer) == len(readable_photos)
        for path, distance in answer:
            expected = np.linalg.norm(exact[readable_photos.index(path)] - query)
            assert abs(distance - expected) < 1e-3


def write_as_float32(index_path: Path) -> dict[int, np.ndarray]:
    """Turn an index into one written before float16: float32 blobs, no format row."""
    with sqlite3.connect(index_path) as connection:
        rows = connection.execute("SELECT id, vector FROM vectors").fetchall()
        older = {i: faiss_store.decode_blobs([blob])[0] for i, blob in rows}
        connection.executemany(
            "UPDATE vectors SET vector = ? WHERE id = ?",
            [(vector.tobytes(), i) for i, vector in older.items()],
        )
        connection.execute(f"DROP TABLE {faiss_store.FORMAT_TABLE}")
    return older


def stored_blobs(index_path: Path) -> dict[int, bytes]:
    with sqlite3.connect(index_path) as connection:
        return dict(connection.execute("SELECT id, vector FROM vectors").fetchall())


def test_an_older_float32_index_is_migrated_in_place_and_an_interrupted_migration_loses_nothing(
    embedder, photo_folder: Path, readable_photos: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = IndexSettings(photo_folder)
    with ImageIndex.open(settings, embedder.spec) as index:
        index.update(embedder)
        [before] = index.search(index.vector_of("chelsea.jpeg"), k=3)
    index_path = default_index_path(photo_folder)
    older = write_as_float32(index_path)
    float32_blobs = stored_blobs(index_path)

    # Crash after the first chunk of vectors was rewritten (inside the migration's transaction)
    converted: list[int] = []
    original = faiss_store._as_stored

    def crash_after_first_chunk(vectors: np.ndarray) -> np.ndarray:
        if len(converted) == 2:
            raise KeyboardInterrupt
        converted.append(1)
        return original(vectors)

    monkeypatch.setattr(faiss_store.SQLiteFaissStore, "READ_CHUNK", 2)
    monkeypatch.setattr(faiss_store, "_as_stored", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        ImageIndex.open(settings, embedder.spec)
    monkeypatch.undo()
    interrupted = stored_blobs(index_path)

    with sqlite3.connect(index_path) as connection:  # as an older index was made
        connection.execute("PRAGMA page_size = 4096")
        connection.execute("VACUUM")
    with ImageIndex.open(settings, embedder.spec) as index:
        update = index.update(embedder)
        [after] = index.search(index.vector_of("chelsea.jpeg"), k=3)
        migrated = {int(i): v for i, v in zip(index.catalogue.ids(), index.vectors().vectors)}
    catalogue = Catalogue.open(index_path)
    kept = catalogue.store_space("faiss").execute(f"SELECT format FROM {faiss_store.FORMAT_TABLE}")
    catalogue.close()

    assert interrupted == float32_blobs  # the interrupted migration changed nothing
    assert not update.embedded  # nothing embedded again
    assert kept == [("float16",)]
    assert set(stored_blobs(index_path)) == set(older)
    for i, vector in older.items():
        np.testing.assert_allclose(migrated[i], vector, atol=2**-11)
    assert [path for path, _ in after] == [path for path, _ in before]
    np.testing.assert_allclose([d for _, d in after], [d for _, d in before], atol=1e-3)
    with sqlite3.connect(index_path) as connection:  # VACUUM gave the freed pages back, in
        assert connection.execute("PRAGMA freelist_count").fetchone() == (0,)
        assert connection.execute("PRAGMA page_size").fetchone() == (PAGE_BYTES,)  # 3 a page


def test_a_rebuild_keeps_float16_vectors_float16(
    embedder, photo_folder: Path, readable_photos: list[str]
) -> None:
    """`--rebuild` clears the catalogue's settings: the format must not live there."""
    settings = IndexSettings(photo_folder)
    with ImageIndex.open(settings, embedder.spec) as index:
        index.update(embedder)
        first = index.vectors().vectors
    with ImageIndex.open(settings, embedder.spec, rebuild=True) as index:
        index.update(embedder)
        again = index.vectors().vectors
    np.testing.assert_array_equal(again, first)


def test_packed_blobs_give_back_every_float16_bit_and_plain_rows_stay_readable() -> None:
    """15 bits a dimension lose nothing for components below 2 in magnitude (signs, zeros,
    subnormals, +-1 included); a row that cannot be packed, a dimension not a multiple of 16,
    and rows written before packing (plain float16) are read as they are, in order."""
    random = np.random.default_rng(0)
    vectors = random.normal(size=(40, 1280)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1, :4] = [-1.0, 1.0, 0.0, -0.0]
    vectors[2, :3] = [6e-8, -6e-8, 1.999]  # subnormals, the largest that packs
    vectors[3, 5] = 2.0  # the top exponent bit is set: kept plain
    vectors[4, 6] = np.inf
    vectors[5, 7] = -3e4
    half = vectors.astype("<f2")
    blobs = faiss_store._blobs(half)
    plain = [row.tobytes() for row in half]  # how rows were stored before packing
    mixed = [plain[n] if n % 3 == 0 else blob for n, blob in enumerate(blobs)]

    packed_length = 1280 * 15 // 8 + 1
    assert [len(blob) for blob in blobs[:6]] == [packed_length] * 3 + [2560] * 3
    assert all(len(blob) == packed_length for blob in blobs[6:])
    for stored in (blobs, mixed, plain):
        decoded = faiss_store.decode_blobs(stored)
        assert decoded.dtype == np.float32
        np.testing.assert_array_equal(decoded.astype("<f2").view("<u2"), half.view("<u2"))
    odd = vectors[:3, :1000].astype("<f2")  # 1000 = 8 * 125: not packed
    assert [len(blob) for blob in faiss_store._blobs(odd)] == [2000] * 3
    np.testing.assert_array_equal(faiss_store.decode_blobs(faiss_store._blobs(odd)), odd)


def test_packed_rows_fit_27_to_a_page_and_an_unpacked_index_keeps_answering(
    embedder, photo_folder: Path, readable_photos: list[str]
) -> None:
    """An index written before packing (plain float16 rows) answers the same; rows upserted
    later are packed beside the plain ones; 27 packed 1280-d rows fill a 64 KB page."""
    settings = IndexSettings(photo_folder)
    with ImageIndex.open(settings, embedder.spec) as index:
        index.update(embedder)
        vectors = index.vectors().vectors
        [before] = index.search(vectors[0], k=len(readable_photos))
    index_path = default_index_path(photo_folder)
    with sqlite3.connect(index_path) as connection:  # as the store wrote them before packing
        rows = connection.execute("SELECT id, vector FROM vectors").fetchall()
        plain = {i: faiss_store.decode_blobs([blob]).astype("<f2").tobytes() for i, blob in rows}
        connection.executemany(
            "UPDATE vectors SET vector = ? WHERE id = ?", [(b, i) for i, b in plain.items()]
        )
    Path(index_path).with_suffix(".faiss").unlink()  # rebuilt from the plain rows
    with ImageIndex.open(settings, embedder.spec) as index:
        [after] = index.search(vectors[0], k=len(readable_photos))
        np.testing.assert_array_equal(index.vectors().vectors, vectors)
        first = int(index.catalogue.ids()[0])
        with index.catalogue.transaction():
            index.store.upsert(np.asarray([first]), vectors[:1] * 0.5)
        stored = index.store.vectors(np.asarray([first]))[0]
        exact = vectors[0].astype(np.float64) * 0.5
        nearest = (vectors[0] * 0.5).astype("<f2").astype(np.float64)  # NumPy's rounding
        np.testing.assert_array_equal(stored.astype("<f2").astype(np.float32), stored)
        assert np.all(np.abs(stored - exact) <= np.abs(nearest - exact))  # a nearest float16
    lengths = sorted(length for (length,) in sqlite3.connect(index_path).execute(
        "SELECT length(vector) FROM vectors"))  # fmt: skip

    assert after == before
    assert lengths == [2401] + [2560] * (len(readable_photos) - 1)

    with sqlite3.connect(Path(index_path).parent / "packed.sqlite") as connection:
        connection.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        connection.execute("CREATE TABLE vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
        packed = faiss_store._blobs(np.repeat(vectors[:1], 27 * 4, axis=0))
        connection.executemany("INSERT INTO vectors VALUES (?, ?)", list(enumerate(packed)))
        connection.commit()
        pages = connection.execute(
            "SELECT count(*) FROM dbstat WHERE name = 'vectors' AND pagetype = 'leaf'"
        ).fetchall()
    assert pages == [(4,)]  # 2,427 bytes a vector on disk (25 plain rows a page: 2,621)
