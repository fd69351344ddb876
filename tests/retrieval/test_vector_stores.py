"""Every vector store, through the index a user runs: the same answers, updates and resumes.

Shared behaviour is parametrised over every registered store (faiss, and Milvus Lite: a real
embedded Milvus engine on disk); Milvus's own traps (flush, index parameters, the Lite lock,
foreign collections) are tested below them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.errors import FoldervisionError, IndexMismatchError, StoreLockedError
from foldervision.retrieval.catalogue import Catalogue
from foldervision.retrieval.embedder import Embedder, EmbedderSpec
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import STORES, StoreLocation
from foldervision.retrieval.stores.milvus import MilvusStore
from foldervision.retrieval.stores.milvus_connection import lock_holders

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOAT16_ATOL = 2**-11
"""Float16 in the default store (components of a unit vector within 2^-12); Milvus: float32."""


@pytest.fixture(params=STORES.names())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    """A store location per registered store; Milvus Lite gets a fresh folder on disk."""
    if request.param == "milvus":
        return StoreLocation("milvus", str(tmp_path / "vectors.db"))
    return StoreLocation(request.param)


def test_every_store_is_covered() -> None:
    assert set(STORES.names()) == {"faiss", "milvus"}


DEFAULT_STORE = StoreLocation()


def at(
    folder: Path, index_path: Path | None = None, store: StoreLocation = DEFAULT_STORE
) -> IndexSettings:
    """The settings of an index of `folder` (in the folder unless `index_path`) in `store`."""
    return IndexSettings(folder, index_path=index_path, store_location=store)


def neighbours(index: ImageIndex, k: int) -> dict[str, list[str]]:
    """Top-k paths for every indexed image used as a query, by its stored vector."""
    indexed = index.vectors()
    answers = index.search(indexed.vectors, k)
    return {
        index.relative(path): [found for found, _ in row]
        for path, row in zip(indexed.paths, answers)
    }


def test_index_and_search_on_real_photos(
    photo_folder: Path, embedder: Embedder, store: str, readable_photos: list[str]
) -> None:
    with ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index:
        update = index.update(embedder)
        assert sorted(update.embedded) == readable_photos
        assert len(index.store) == len(readable_photos)
        indexed = index.vectors()
        [row] = index.search(indexed.vectors[:1], k=3)
        second = index.vector_of(row[1][0])

    assert row[0] == (index.relative(indexed.paths[0]), pytest.approx(0.0, abs=1e-3))
    assert len(row) == 3 and row[1][1] > 0.1
    distances = [distance for _, distance in row]
    assert distances == sorted(distances)
    # Euclidean, not squared: the distance to the second match is |a - b| of the unit vectors.
    expected = np.linalg.norm(indexed.vectors[0] - second)
    assert row[1][1] == pytest.approx(expected, abs=1e-4)


def test_every_store_gives_the_default_stores_answers(
    digits_folder: Path, photo_folder: Path, tmp_path: Path, embedder: Embedder, store: str
) -> None:
    for name in ("café au lait.webp", "Coffee.PNG", "猫 cat.tif"):
        shutil.copy(photo_folder / name, digits_folder / name)
    with ImageIndex.open(at(digits_folder, tmp_path / "faiss.sqlite"), embedder.spec) as index:
        index.update(embedder)
        expected = neighbours(index, k=4)
    with ImageIndex.open(at(digits_folder, tmp_path / "x.sqlite", store), embedder.spec) as index:
        index.update(embedder)
        answers = neighbours(index, k=4)

    assert len(answers) == len(expected) > 20
    assert answers == expected


def test_adds_changes_and_removals_follow_the_catalogue(
    photo_folder: Path, embedder: Embedder, store: str, readable_photos: list[str]
) -> None:
    with ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index:
        index.update(embedder)
        first_ids = dict(index.catalogue.files())
    (photo_folder / "ROCKET.BMP").unlink()
    shutil.copy(photo_folder / "astronaut.jpg", photo_folder / "chelsea.jpeg")
    stat = (photo_folder / "chelsea.jpeg").stat()
    os.utime(photo_folder / "chelsea.jpeg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    shutil.copy(photo_folder / "Coffee.PNG", photo_folder / "added.png")

    with ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index:
        update = index.update(embedder)
        ids = {path: file_id for file_id, path in index.catalogue.files()}
        store_ids = index.store.ids()
        [row] = index.search(index.vector_of("chelsea.jpeg")[np.newaxis], k=2)

    assert sorted(update.embedded) == ["added.png", "chelsea.jpeg"]
    assert update.removed == ["ROCKET.BMP"]
    assert sorted(store_ids.tolist()) == sorted(ids.values())
    assert len(store_ids) == len(readable_photos)
    assert ids["chelsea.jpeg"] == {v: k for k, v in first_ids.items()}["chelsea.jpeg"]  # kept
    # the changed file's vector was replaced, not duplicated: its twin is now at distance 0
    assert {path for path, _ in row} == {"chelsea.jpeg", "astronaut.jpg"}
    assert row[1][1] == pytest.approx(0.0, abs=1e-3)


def test_interrupted_run_resumes_with_nothing_lost_or_duplicated(
    photo_folder: Path, tmp_path: Path, store: str, readable_photos: list[str]
) -> None:
    embedder = colour_layout_embedder()
    with ImageIndex.open(at(photo_folder, tmp_path / "clean.sqlite"), embedder.spec) as index:
        index.update(embedder, batch_size=2)
        clean = index.vectors()
    original = embedder.embed_pixels

    def crash_on_third_batch(pixels: np.ndarray) -> np.ndarray:
        if len(embedder.calls) == 2:
            raise KeyboardInterrupt
        return original(pixels)

    embedder.calls.clear()
    embedder.embed_pixels = crash_on_third_batch  # type: ignore[method-assign]
    with (
        pytest.raises(KeyboardInterrupt),
        ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index,
    ):
        index.update(embedder, batch_size=2)
    embedder.embed_pixels = original  # type: ignore[method-assign]
    embedder.calls.clear()

    with ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index:
        assert len(index.store) == 4  # two whole batches were kept
        update = index.update(embedder, batch_size=2)
        resumed = index.vectors()
        store_ids = index.store.ids()

    assert len(update.embedded) == len(readable_photos) - 4 == sum(embedder.calls)
    assert resumed.paths == clean.paths
    np.testing.assert_allclose(resumed.vectors, clean.vectors, atol=FLOAT16_ATOL)
    assert sorted(store_ids.tolist()) == sorted(resumed.ids.tolist())


def test_a_vector_written_without_its_catalogue_row_is_dropped_on_open(
    photo_folder: Path, store: str
) -> None:
    """A crash between the store's write and the catalogue's commit leaves an orphan id."""
    embedder = colour_layout_embedder()
    with ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index:
        index.update(embedder)
        index.store.upsert(np.asarray([9999]), np.ones((1, 48), np.float32) / np.sqrt(48))
        assert 9999 in index.store.ids()
    with ImageIndex.open(at(photo_folder, store=store), embedder.spec) as index:
        assert 9999 not in index.store.ids()
        assert len(index.store) == len(index)


# --------------------------------------------------------------------------------------------
# Milvus: its traps, each tested.


def open_lite(path: Path, catalogue_path: Path, spec: EmbedderSpec, **options) -> MilvusStore:
    catalogue = Catalogue.open(catalogue_path)
    catalogue.bind_to(spec)
    return MilvusStore(str(path), catalogue, spec, **options)


def unit_vectors(count: int, dimension: int = 48, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_hnsw_parameters_reach_the_milvus_index(tmp_path: Path) -> None:
    """pymilvus flattens params={...} into keys Lite drops; ours must arrive intact."""
    spec = colour_layout_embedder().spec
    store = open_lite(
        tmp_path / "v.db", tmp_path / "c.sqlite", spec,
        index_type="HNSW", index_params={"M": 12, "efConstruction": 90},
    )  # fmt: skip
    try:
        store.upsert(np.arange(1, 41), unit_vectors(40))
        description = store.index_description()
        distances, ids = store.search(unit_vectors(40)[:2], k=1)
    finally:
        store.close()

    assert description["index_type"] == "HNSW"
    assert description["params"] == {"M": 12, "efConstruction": 90}
    assert ids[:, 0].tolist() == [1, 2]


def test_searches_after_writes_are_served_from_flushed_segments(tmp_path: Path) -> None:
    """Unflushed rows are brute-forced in Python (seconds a query): writes flush before search."""
    spec = colour_layout_embedder().spec
    store = open_lite(tmp_path / "v.db", tmp_path / "c.sqlite", spec)
    flushes: list[str] = []
    original_flush = store._client.flush
    store._client.flush = lambda name, **kw: (flushes.append(name), original_flush(name, **kw))
    try:
        store.upsert(np.arange(1, 101), unit_vectors(100))
        store.search(unit_vectors(100)[:1], k=4)
        store.search(unit_vectors(100)[1:2], k=4)  # nothing new written: no second flush
        store.remove([1])
        _, ids = store.search(unit_vectors(100)[:1], k=4)
    finally:
        store.close()

    assert flushes == [store.collection, store.collection]
    assert 1 not in ids[0]
    data_files = list((tmp_path / "v.db" / "collections" / store.collection).rglob("*.parquet"))
    assert data_files  # the rows live in sealed segments, not only in the write-ahead log


def test_lite_refuses_an_index_type_it_cannot_build(tmp_path: Path) -> None:
    spec = colour_layout_embedder().spec
    with pytest.raises(FoldervisionError, match="cannot build a IVF_PQ index"):
        open_lite(tmp_path / "v.db", tmp_path / "c.sqlite", spec, index_type="IVF_PQ")


HOLD_LITE_FOLDER = """
import sys, time
from pymilvus import MilvusClient
MilvusClient(sys.argv[1])
print("ready", flush=True)
time.sleep(120)
"""


def test_a_lite_folder_held_by_another_process_is_one_line_naming_it(
    photo_folder: Path, tmp_path: Path, cli_uses_session_embedder: Embedder
) -> None:
    lite = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_LITE_FOLDER), str(lite)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert lock_holders(lite / "LOCK") == [holder.pid]
        spec = colour_layout_embedder().spec
        with pytest.raises(StoreLockedError, match=f"in use by process {holder.pid}"):
            ImageIndex.open(at(photo_folder, store=StoreLocation("milvus", str(lite))), spec)
        result = CliRunner().invoke(
            app,
            ["index", str(photo_folder), "--index", str(tmp_path / "cli.sqlite"),
             "--image-size", "96", "--store", f"milvus:{lite}"],
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()

    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert str(lite) in line and str(holder.pid) in line and "--store" in line


def test_a_collection_of_another_embedder_is_refused(
    photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite = StoreLocation("milvus", str(tmp_path / "v.db"))
    first, second = colour_layout_embedder(16), colour_layout_embedder(32)
    with ImageIndex.open(at(photo_folder, tmp_path / "a.sqlite", lite), first.spec) as index:
        index.update(first)
    # Same collection name (as if renamed or shared), other embedder: never mixed in.
    monkeypatch.setattr(EmbedderSpec, "fingerprint", lambda spec: "same")
    with ImageIndex.open(at(photo_folder, tmp_path / "b.sqlite", lite), first.spec) as index:
        index.update(first)
    with pytest.raises(IndexMismatchError, match="another embedder"):
        ImageIndex.open(at(photo_folder, tmp_path / "c.sqlite", lite), second.spec)


def test_another_indexs_collection_is_not_overwritten(photo_folder: Path, tmp_path: Path) -> None:
    lite = StoreLocation("milvus", str(tmp_path / "v.db"))
    embedder = colour_layout_embedder()
    with ImageIndex.open(at(photo_folder, tmp_path / "a.sqlite", lite), embedder.spec) as index:
        index.update(embedder)
        count = len(index.store)
    with pytest.raises(FoldervisionError, match="holds the vectors of another index"):
        ImageIndex.open(at(photo_folder, tmp_path / "b.sqlite", lite), embedder.spec)
    # --rebuild of the owning index keeps its claim and starts over
    owner = at(photo_folder, tmp_path / "a.sqlite", lite)
    with ImageIndex.open(owner, embedder.spec, rebuild=True) as index:
        assert len(index.store) == 0
        index.update(embedder)
        assert len(index.store) == count


def test_cli_indexes_and_searches_through_milvus_lite(
    photo_folder: Path, tmp_path: Path, cli_uses_session_embedder: Embedder
) -> None:
    lite = tmp_path / "vectors.db"
    size = ["--image-size", "96", "--store", f"milvus:{lite}"]
    indexed = CliRunner().invoke(app, ["index", str(photo_folder), *size])
    query = photo_folder / "猫 cat.tif"
    found = CliRunner().invoke(
        app, ["search", str(query), "--database", str(photo_folder), "-k", "2", *size]
    )

    assert indexed.exit_code == 0, indexed.stderr
    assert (lite / "LOCK").exists()
    assert found.exit_code == 0, found.stderr
    first = found.stdout.splitlines()[0].split("\t")
    assert first[0] == "1" and float(first[1]) < 1e-3 and first[2] == str(query)


@pytest.mark.parametrize(
    ("value", "message"),
    [("milvus:vectors", "must end in .db"), ("qdrant", "Unknown vector store")],
)
def test_a_bad_store_is_one_line_saying_what_to_pass(
    photo_folder: Path, value: str, message: str, cli_uses_session_embedder: Embedder
) -> None:
    arguments = ["index", str(photo_folder), "--image-size", "96", "--store", value]
    result = CliRunner().invoke(app, arguments)

    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line


@pytest.fixture
def cli_uses_colour_layout(monkeypatch: pytest.MonkeyPatch) -> EmbedderSpec:
    """CLI runs embed with the network-free colour-layout embedder."""
    from foldervision.retrieval import service as retrieval_service

    monkeypatch.setattr(retrieval_service, "load_embedder", lambda *_: colour_layout_embedder())
    return colour_layout_embedder().spec


@pytest.mark.parametrize("given", ["--store-token", "environment"])
def test_the_store_token_reaches_the_milvus_connection_and_no_environment(
    photo_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli_uses_colour_layout: EmbedderSpec,
    given: str,
) -> None:
    import pymilvus

    monkeypatch.delenv("FOLDERVISION_MILVUS_TOKEN", raising=False)
    tokens: list[tuple[str, str]] = []

    class RecordingClient(pymilvus.MilvusClient):
        def __init__(self, uri: str, token: str = "", **options: object) -> None:
            tokens.append((uri, token))
            super().__init__(uri=uri, token=token, **options)

    monkeypatch.setattr(pymilvus, "MilvusClient", RecordingClient)
    lite = tmp_path / "v.db"
    arguments = ["index", str(photo_folder), "--store", f"milvus:{lite}"]
    if given == "--store-token":
        result = CliRunner().invoke(app, [*arguments, "--store-token", "reader:s3cret"])
    else:  # the variable is only --store-token's default, read by the option parser
        environment = {"FOLDERVISION_MILVUS_TOKEN": "reader:s3cret"}
        result = CliRunner().invoke(app, arguments, env=environment)

    assert result.exit_code == 0, result.stderr
    assert tokens == [(str(lite), "reader:s3cret")]
    assert "FOLDERVISION_MILVUS_TOKEN" not in os.environ
    assert "s3cret" not in result.stdout + result.stderr


def test_ann_approximate_makes_an_ivf_milvus_collection_and_other_choices_are_one_line(
    photo_folder: Path, tmp_path: Path, cli_uses_colour_layout: EmbedderSpec
) -> None:
    lite = tmp_path / "v.db"
    arguments = ["index", str(photo_folder), "--store", f"milvus:{lite}"]
    approximate = CliRunner().invoke(app, [*arguments, "--ann", "approximate"])
    exact = CliRunner().invoke(app, [*arguments, "--ann", "exact"])
    auto = CliRunner().invoke(app, [*arguments, "--ann", "auto"])
    kept = CliRunner().invoke(app, arguments)  # no --ann: the collection's own index
    location = StoreLocation("milvus", str(lite))
    with ImageIndex.open(at(photo_folder, store=location), cli_uses_colour_layout) as index:
        description = index.store.index_description()
        [row] = index.search(index.vector_of("ROCKET.BMP"), k=2)

    assert approximate.exit_code == 0, approximate.stderr
    assert description["index_type"] == "IVF_SQ8" and description["kind"] == "approximate"
    assert row[0] == ("ROCKET.BMP", pytest.approx(0.0, abs=1e-2))
    assert exact.exit_code == 2 and auto.exit_code == 2
    [exact_line] = exact.stderr.strip().splitlines()
    assert "has a IVF_SQ8 index, not FLAT" in exact_line and str(lite) in exact_line
    [auto_line] = auto.stderr.strip().splitlines()
    assert auto_line.startswith("error: --ann auto:") and "--ann approximate" in auto_line
    assert kept.exit_code == 0, kept.stderr


# --------------------------------------------------------------------------------------------
# The remote path: a real Milvus standalone server (PyPI `milvus`) on a local port.


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus 2.3 standalone server: $FOLDERVISION_TEST_MILVUS_URI, else one started here."""
    if os.environ.get("FOLDERVISION_TEST_MILVUS_URI"):
        yield os.environ["FOLDERVISION_TEST_MILVUS_URI"]
        return
    milvus = pytest.importorskip("milvus", reason="the Milvus server package is Linux x86-64 only")
    server = milvus.MilvusServer(wait_for_started=False)
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus_server")))
    try:
        server.start()
        server.wait_started(timeout=SERVER_START_SECONDS * 1000)
    except (TimeoutError, RuntimeError) as error:
        server.stop()
        pytest.skip(f"the Milvus server did not start here: {error}")
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


SERVER_START_SECONDS = 120


def test_a_milvus_server_answers_like_the_default_store(
    digits_folder: Path, tmp_path: Path, milvus_server: str
) -> None:
    embedder = colour_layout_embedder()
    with ImageIndex.open(at(digits_folder, tmp_path / "faiss.sqlite"), embedder.spec) as index:
        index.update(embedder)
        expected = neighbours(index, k=4)
    remote = StoreLocation.parse(f"milvus:{milvus_server}", token="root:Milvus")
    with ImageIndex.open(at(digits_folder, tmp_path / "m.sqlite", remote), embedder.spec) as index:
        index.update(embedder, batch_size=8)
        answers = neighbours(index, k=4)
    removed = sorted(digits_folder.rglob("*.png"))[:3]
    for path in removed:
        path.unlink()
    with ImageIndex.open(at(digits_folder, tmp_path / "m.sqlite", remote), embedder.spec) as index:
        update = index.update(embedder)
        remaining = len(index.store)
        store_ids = sorted(index.store.ids().tolist())
        catalogue_ids = sorted(index.catalogue.ids().tolist())
        index.store._client.drop_collection(index.store.collection)

    # float16 (faiss) against float32 (Milvus): near ties may swap places, not change sets
    assert {q: set(found) for q, found in answers.items()} == {
        q: set(found) for q, found in expected.items()
    }
    assert len(update.removed) == 3
    assert remaining == len(expected) - 3 and store_ids == catalogue_ids
