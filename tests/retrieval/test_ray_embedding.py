"""Embedding on Ray (local, 2 CPUs): the same vectors as one process, written to any store.

One Ray session serves the whole module (starting Ray costs ~10 s); the workers build the real
MobileNetV2 at 96 px from the session's weights cache.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.images import load_image
from foldervision.retrieval.catalogue import Catalogue
from foldervision.retrieval.embedder import Embedder, load_embedder
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import StoreLocation

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray(weights_cache: Path) -> Iterator[object]:
    ray = pytest.importorskip("ray")
    from foldervision.retrieval.ray_embedding import connect_ray

    assert not ray.is_initialized()
    try:
        yield connect_ray(cpus=2)
    finally:
        ray.shutdown()


@pytest.mark.parametrize("store", ["faiss", "milvus"])
def test_ray_index_equals_the_single_process_index(
    photo_folder: Path,
    tmp_path: Path,
    embedder: Embedder,
    local_ray: object,
    store: str,
    broken_photos: list[str],
) -> None:
    from foldervision.retrieval.ray_embedding import RayEmbedder

    settings = IndexSettings(photo_folder, image_size=embedder.spec.image_size)
    single = dataclasses.replace(settings, index_path=tmp_path / "one.sqlite")
    with ImageIndex.open(single, embedder.spec) as index:
        index.update(embedder, batch_size=3)
        expected = index.vectors()
    factory = functools.partial(load_embedder, settings)
    # Tasks of 4 paths, forward passes of 3: several tasks per worker, batches that straddle them.
    on_ray = RayEmbedder(factory, embedder.spec, workers=2, worker_batch_size=4)
    location = StoreLocation("milvus", str(tmp_path / "v.db")) if store == "milvus" else None
    on_store = dataclasses.replace(
        settings, index_path=tmp_path / "ray.sqlite", store_location=location or StoreLocation()
    )
    with ImageIndex.open(on_store, embedder.spec) as index:
        update = index.update(on_ray, batch_size=3)
        found = index.vectors()
        skipped = sorted(Path(skip.path).name for skip in index.skipped_files())

    assert sorted(Path(skip.path).name for skip in update.skipped) == broken_photos == skipped
    assert found.paths == expected.paths
    assert found.ids.tolist() == expected.ids.tolist()  # written in the same order
    np.testing.assert_allclose(found.vectors, expected.vectors, atol=2**-11)  # fp16 store


def test_a_worker_runs_the_drivers_onnx_file_on_one_thread_without_building_keras(
    photo_folder: Path,
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    readable_photos: list[str],
    broken_photos: list[str],
) -> None:
    from foldervision import onnx_runtime
    from foldervision.retrieval.onnx_backend import exported_model_path
    from foldervision.retrieval.ray_embedding import EmbedOnWorker

    model = exported_model_path(embedder.spec).read_bytes()  # what the driver hands over
    for variable in ("FOLDERVISION_ORT_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(variable, "0")  # restored after the worker sets it
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "node-cache"))  # a bare node
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # a big node: ORT would take 7 threads
    threads: list[tuple[int, int]] = []
    open_session = onnx_runtime.open_session

    def recording_open_session(path: Path, count: int = 1) -> object:
        session = open_session(path, count)
        intra_op = session.get_session_options().intra_op_num_threads
        threads.append((intra_op, onnx_runtime.parallel_runs()))
        return session

    def no_keras() -> None:
        raise AssertionError("the worker built the Keras model")

    monkeypatch.setattr(onnx_runtime, "open_session", recording_open_session)
    worker = EmbedOnWorker(
        lambda: Embedder(embedder.spec, no_keras, "onnx"), embedder.spec.to_dict(), 1, model, 3
    )
    names = sorted(readable_photos + broken_photos)
    out = worker({"path": np.asarray([str(photo_folder / name) for name in names], dtype=object)})

    assert threads == [(1, 1)]  # one session, one run at a time, on one thread
    assert [Path(path).name for path in out["path"]] == names
    assert sorted(n for n, r in zip(names, out["reason"]) if r) == broken_photos
    good = [n for n, r in zip(names, out["reason"]) if not r]
    vectors = np.stack([np.frombuffer(v, "<f4") for v in out["vector"] if v])
    expected = embedder.embed_pixels(
        np.stack([load_image(photo_folder / n, embedder.spec.image_size) for n in good])
    )
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_cli_index_with_ray_writes_milvus(
    photo_folder: Path,
    tmp_path: Path,
    local_ray: object,
    embedder: Embedder,
    readable_photos: list[str],
) -> None:
    lite = tmp_path / "v.db"
    result = CliRunner().invoke(
        app,
        ["index", str(photo_folder), "--ray", "--image-size", "96", "--store", f"milvus:{lite}"],
    )
    in_milvus = IndexSettings(photo_folder, store_location=StoreLocation("milvus", str(lite)))
    with ImageIndex.open(in_milvus, embedder.spec) as index:  # read back from Milvus Lite
        stored = index.vectors()
        store_ids = index.store.ids()
        [row] = index.search(index.vector_of("ROCKET.BMP"), k=1)
    expected = embedder.embed_pixels(
        np.stack([load_image(path, embedder.spec.image_size) for path in stored.paths])
    )

    assert result.exit_code == 0, result.stderr
    assert f"({len(readable_photos)} images)" in result.stderr
    assert sorted(path.name for path in stored.paths) == readable_photos
    assert store_ids.tolist() == sorted(stored.ids.tolist())
    np.testing.assert_allclose(stored.vectors, expected, atol=2**-11)
    assert row == [("ROCKET.BMP", pytest.approx(0.0, abs=1e-3))]


def test_cli_index_with_ray_and_int8_holds_int8_vectors(
    photo_folder: Path, tmp_path: Path, local_ray: object
) -> None:
    """--ray must embed with the --precision (and --backend) asked for, not the defaults."""
    index_path = tmp_path / "int8.sqlite"
    arguments = ["index", str(photo_folder), "--ray", "--image-size", "96", "--precision", "int8"]
    result = CliRunner().invoke(app, [*arguments, "--index", str(index_path)])

    assert result.exit_code == 0, result.stderr
    catalogue = Catalogue.open(index_path)
    stored = catalogue.stored_spec()
    catalogue.close()
    assert stored is not None and stored.precision == "int8"
    settings = IndexSettings(photo_folder, index_path=index_path, image_size=96, precision="int8")
    int8 = load_embedder(settings)
    with ImageIndex.open(settings, int8.spec) as index:
        vector = index.vector_of("ROCKET.BMP")
    pixels = load_image(photo_folder / "ROCKET.BMP", 96)[np.newaxis]
    np.testing.assert_allclose(vector, int8.embed_pixels(pixels)[0], atol=2**-11)  # float16


def test_cli_index_with_ray_refuses_int8_on_keras_in_one_line(
    photo_folder: Path, tmp_path: Path, local_ray: object
) -> None:
    arguments = ["index", str(photo_folder), "--ray", "--backend", "keras", "--precision", "int8"]
    result = CliRunner().invoke(app, [*arguments, "--index", str(tmp_path / "x.sqlite")])

    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "precision int8 runs only on the onnx backend" in line


RUN_CLI = """
import sys
from foldervision.cli import main
{setup}
try:
    main(sys.argv[1:])
except SystemExit as exit:
    print("exit", exit.code)
print("imported", "ray" in sys.modules, "pymilvus" in sys.modules)
"""


def run_cli_in_subprocess(weights_cache: Path, *arguments: str, setup: str = "") -> tuple[str, str]:
    environment = {**os.environ, "FOLDERVISION_CACHE": str(weights_cache)}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), *sys.path])
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI.format(setup=setup), *arguments],
        capture_output=True, text=True, env=environment, timeout=300,
    )  # fmt: skip
    return done.stdout, done.stderr


def test_a_plain_index_run_never_imports_ray_or_milvus(
    photo_folder: Path, weights_cache: Path, embedder: Embedder
) -> None:
    stdout, stderr = run_cli_in_subprocess(
        weights_cache, "index", str(photo_folder), "--image-size", "96"
    )

    assert "exit 0" in stdout, stderr
    assert "imported False False" in stdout


def test_ray_option_without_ray_installed_is_one_line(
    photo_folder: Path, weights_cache: Path
) -> None:
    stdout, stderr = run_cli_in_subprocess(
        weights_cache, "index", str(photo_folder), "--ray", setup="sys.modules['ray'] = None"
    )

    assert "exit 2" in stdout
    [line] = stderr.strip().splitlines()
    assert line.startswith("error: --ray needs Ray") and "foldervision[cluster]" in line


RAY_START_TIMES_OUT = """
import atexit, subprocess, ray
strays = []
def start_that_times_out(**options):
    # What Ray 2.60 does when its raylet misses the 30 s window: processes left, bare Exception.
    strays.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
    raise Exception("The current node timed out during startup. This could happen because ...")
ray.init = start_that_times_out
stopped = lambda: all(process.poll() is not None for process in strays)
atexit.register(lambda: print("strays", len(strays), "stopped", stopped()))
"""


def test_a_local_ray_that_never_starts_is_tried_three_times_then_one_line(
    photo_folder: Path, weights_cache: Path
) -> None:
    """Ray's start-up timeout is a bare Exception: it must become a one-line error, not a
    traceback, after the half-started processes of every try are stopped."""
    stdout, stderr = run_cli_in_subprocess(
        weights_cache, "index", str(photo_folder), "--ray", setup=RAY_START_TIMES_OUT
    )

    assert "exit 2" in stdout, stderr
    assert "strays 3 stopped True" in stdout
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: cannot start a local Ray (3 tries): The current node")
