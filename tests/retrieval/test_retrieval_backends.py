"""Embedding backends: every backend computes the Keras model's vectors; ONNX files are cached
by the spec's fingerprint; a search with a cached model never imports TensorFlow; INT8 and fp32
vectors never share an index."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.errors import FoldervisionError, IndexMismatchError
from foldervision.images import list_image_files, load_images
from foldervision.retrieval.backends import available_backends
from foldervision.retrieval.embedder import Embedder, mobilenetv2_embedder
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.onnx_backend import exported_model_path
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE_SIZE = 96
AGREEMENT = 1e-4
"""Largest difference of unit-vector components allowed between a backend and Keras."""


@pytest.fixture(scope="module")
def photo_pixels(photo_folder_template: Path) -> np.ndarray:
    return load_images(list_image_files(photo_folder_template), TEST_IMAGE_SIZE).pixels


@pytest.fixture(scope="module")
def keras_vectors(weights_cache: Path, photo_pixels: np.ndarray) -> np.ndarray:
    return mobilenetv2_embedder(image_size=TEST_IMAGE_SIZE, backend="keras").embed_pixels(
        photo_pixels
    )


def nearest_four(vectors: np.ndarray) -> np.ndarray:
    distances = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1, kind="stable")[:, :4]


@pytest.mark.parametrize("backend", available_backends())
def test_every_backend_gives_the_keras_vectors_and_neighbours(
    backend: str, photo_pixels: np.ndarray, keras_vectors: np.ndarray
) -> None:
    vectors = mobilenetv2_embedder(image_size=TEST_IMAGE_SIZE, backend=backend).embed_pixels(
        photo_pixels
    )

    assert vectors.shape == keras_vectors.shape and vectors.dtype == np.float32
    assert np.abs(vectors - keras_vectors).max() <= AGREEMENT
    np.testing.assert_array_equal(nearest_four(vectors), nearest_four(keras_vectors))


def test_the_exported_model_is_found_by_fingerprint_without_building_keras(
    embedder: Embedder, photo_pixels: np.ndarray
) -> None:
    cache = Path(os.environ["FOLDERVISION_CACHE"])
    assert embedder.backend == "onnx"
    # The session embedder exported it, under the name earlier releases cached it under.
    assert exported_model_path(embedder.spec) == (
        cache / "embedders" / f"{embedder.spec.fingerprint()}-v2.onnx"
    )
    assert exported_model_path(embedder.spec).is_file()

    def refuse_to_build() -> None:
        raise AssertionError("the cached ONNX file should have been used")

    cached = Embedder(embedder.spec, refuse_to_build, backend="onnx")
    np.testing.assert_array_equal(
        cached.embed_pixels(photo_pixels), embedder.embed_pixels(photo_pixels)
    )


def test_runs_side_by_side_give_the_one_run_vectors_in_order(
    embedder: Embedder, photo_pixels: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vectors_with(runs: int) -> np.ndarray:
        monkeypatch.setenv("FOLDERVISION_ORT_THREADS", str(runs))
        return Embedder(embedder.spec, lambda: None, backend="onnx").embed_pixels(photo_pixels)

    assert len(photo_pixels) > 3
    np.testing.assert_array_equal(vectors_with(3), vectors_with(1))


def test_a_damaged_cached_model_is_one_clear_error(
    embedder: Embedder, photo_pixels: np.ndarray
) -> None:
    spec = dataclasses.replace(embedder.spec, weights="damaged.weights.h5 sha256:0")
    path = exported_model_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an onnx model")

    with pytest.raises(FoldervisionError, match="delete the file") as caught:
        Embedder(spec, lambda: None, backend="onnx").embed_pixels(photo_pixels)
    assert str(path) in str(caught.value)


def test_fingerprint_is_stable_and_changes_with_every_field(embedder: Embedder) -> None:
    spec = embedder.spec
    assert spec.fingerprint() == type(spec).from_dict(spec.to_dict()).fingerprint()
    changed = [
        dataclasses.replace(spec, precision="int8"),
        dataclasses.replace(spec, image_size=spec.image_size + 32),
        dataclasses.replace(spec, pooling="avg"),
        dataclasses.replace(spec, weights="other.weights.h5 sha256:0"),
    ]
    assert len({spec.fingerprint(), *(other.fingerprint() for other in changed)}) == 5


def test_an_index_written_before_precisions_existed_still_opens(embedder: Embedder) -> None:
    stored = embedder.spec.to_dict()
    del stored["precision"]
    assert type(embedder.spec).from_dict(stored) == embedder.spec


def test_an_index_from_draft_decoding_is_refused_not_mixed(
    tmp_path: Path, embedder: Embedder
) -> None:
    from foldervision.retrieval.catalogue import Catalogue

    written_before = embedder.spec.to_dict()
    del written_before["decoding"]  # indexes written when large JPEGs were draft-decoded
    catalogue = Catalogue.open(tmp_path / "index.sqlite")
    with catalogue.transaction():
        catalogue.set_setting("spec", json.dumps(written_before))
    catalogue.close()

    with pytest.raises(IndexMismatchError, match="draft-decoded JPEGs, but this run"):
        ImageIndex.open(
            IndexSettings(tmp_path, index_path=tmp_path / "index.sqlite"), embedder.spec
        )


def test_int8_vectors_never_join_an_fp32_index(
    digits_folder: Path, embedder: Embedder, photo_pixels: np.ndarray
) -> None:
    int8 = mobilenetv2_embedder(image_size=TEST_IMAGE_SIZE, precision="int8")
    vectors = int8.embed_pixels(photo_pixels)

    assert exported_model_path(int8.spec) != exported_model_path(embedder.spec)
    assert exported_model_path(int8.spec).is_file()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with ImageIndex.open(IndexSettings(digits_folder), embedder.spec):
        pass
    with pytest.raises(IndexMismatchError, match="index.sqlite"):
        ImageIndex.open(IndexSettings(digits_folder), int8.spec)


def test_int8_quantizes_the_network_but_not_preprocessing_or_pooling(
    photo_pixels: np.ndarray,
) -> None:
    import onnx

    int8 = mobilenetv2_embedder(image_size=TEST_IMAGE_SIZE, precision="int8")
    int8.embed_pixels(photo_pixels[:1])
    graph = onnx.load(str(exported_model_path(int8.spec))).graph
    last = [node for node in graph.node if graph.output[0].name in node.output]
    int8_weights = [
        array for array in graph.initializer if array.data_type == onnx.TensorProto.INT8
    ]

    # at each scale the pixels are resized and scaled in float, quantized only for the network
    float_first = sorted(node.op_type for node in before_quantizing(graph))
    assert float_first == ["Add", "Add", "Mul", "Mul", "Resize", "Transpose", "Transpose"]
    assert [node.op_type for node in last] == ["Div"]  # the L2 norm runs in float
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 10
    assert len(int8_weights) >= 50  # MobileNetV2's 52 convolutions, per-channel


def before_quantizing(graph: Any) -> list[Any]:
    """The nodes on every path from the graph's input up to its first QuantizeLinear, depth
    first."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []

    def walk(name: str) -> None:
        for node in consumers.get(name, []):
            if node.op_type != "QuantizeLinear":
                found.append(node)
                for output in node.output:
                    walk(output)

    walk(graph.input[0].name)
    return found


def test_int8_on_the_keras_backend_is_one_clear_error(digits_folder: Path) -> None:
    result = CliRunner().invoke(
        app, ["index", str(digits_folder), "--precision", "int8", "--backend", "keras"]
    )

    assert result.exit_code == 2 and result.stdout == ""
    assert "--backend onnx" in result.stderr and result.stderr.count("\n") == 1


def test_search_with_a_cached_model_never_imports_tensorflow(
    digits_folder: Path, embedder: Embedder, weights_cache: Path
) -> None:
    with RetrievalService.open(IndexSettings(digits_folder), embedder=embedder) as service:
        service.update()
    script = (
        "import sys\n"
        "from foldervision.cli import main\n"
        "try:\n"
        f"    main(['search', {str(REPO_ROOT / 'query_images' / 'q1.png')!r}, '--database',\n"
        f"          {str(digits_folder)!r}, '--image-size', '{TEST_IMAGE_SIZE}', '--json'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))\n"
    )
    environment = dict(os.environ, FOLDERVISION_CACHE=str(weights_cache))
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120
    )

    assert completed.returncode == 0, completed.stderr
    result_line, imported = completed.stdout.strip().splitlines()
    assert '"rank": 1' in result_line
    assert imported == "[]"
