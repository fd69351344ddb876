"""Multi-scale descriptors (`--scales`): MobileNetV2's default is two scales; an index built at
one scale goes on working as it was built; a bad `--scales` is one clear line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.retrieval.catalogue import Catalogue
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.index import default_index_path
from foldervision.retrieval.spec import SINGLE_SCALE, EmbedderSpec

SIZE_OPTION = ["--image-size", "96"]


def run_cli(*arguments: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(argument) for argument in arguments])
    return result.exit_code, result.stdout, result.stderr


def stored_spec(folder: Path) -> EmbedderSpec | None:
    with contextlib.closing(Catalogue.open(default_index_path(folder))) as catalogue:
        return catalogue.stored_spec()


def test_mobilenetv2_searches_at_two_scales_by_default(embedder: Embedder) -> None:
    assert embedder.spec.scales == (1.0, 0.7071)
    assert embedder.spec.scale_sides() == [96, 68]
    assert "96 px + 68 px" in embedder.spec.describe()


def test_one_scale_specs_keep_the_fingerprint_they_had_before_scales_existed(
    embedder: Embedder,
) -> None:
    """Their exported ONNX file and Milvus collection are named by it: it must not move."""
    one_scale = dataclasses.replace(embedder.spec, scales=SINGLE_SCALE)
    assert "scales" not in one_scale.to_dict()
    assert "scales" in embedder.spec.to_dict()
    assert one_scale.fingerprint() != embedder.spec.fingerprint()
    stored = json.loads(json.dumps(embedder.spec.to_dict()))  # as the catalogue keeps it
    assert EmbedderSpec.from_dict(stored) == embedder.spec


def test_the_vectors_are_unit_length_and_differ_from_one_scale_vectors(
    embedder: Embedder, photo_folder: Path
) -> None:
    from foldervision.images import load_image
    from foldervision.retrieval.embedder import pretrained_embedder

    pixels = np.stack(
        [load_image(photo_folder / name, 96) for name in ("astronaut.jpg", "Coffee.PNG")]
    )
    two_scales = embedder.embed_pixels(pixels)
    one_scale = pretrained_embedder("mobilenetv2", 96, scales=SINGLE_SCALE).embed_pixels(pixels)

    np.testing.assert_allclose(np.linalg.norm(two_scales, axis=1), 1.0, atol=1e-5)
    similarity = np.sum(two_scales * one_scale, axis=1)
    # the same photo at two scales: close to its one-scale vector, but not the same vector
    assert np.all(similarity > 0.8) and np.all(similarity < 0.9999)


def test_an_index_built_at_one_scale_keeps_it_until_rebuilt(
    photo_folder: Path, cli_uses_session_embedder: Embedder
) -> None:
    exit_code, _, stderr = run_cli("index", photo_folder, "--scales", "1", *SIZE_OPTION)
    assert exit_code == 0, stderr
    assert stored_spec(photo_folder).scales == SINGLE_SCALE

    exit_code, _, stderr = run_cli("index", photo_folder, *SIZE_OPTION)  # no --scales: as built
    assert exit_code == 0, stderr
    assert "(7 images)" in stderr and "indexed" not in stderr  # nothing embedded again
    exit_code, stdout, stderr = run_cli(
        "search", photo_folder / "astronaut.jpg", "--database", photo_folder, *SIZE_OPTION
    )
    assert exit_code == 0, stderr
    assert stdout.splitlines()[0].endswith("astronaut.jpg")
    assert stored_spec(photo_folder).scales == SINGLE_SCALE

    exit_code, _, stderr = run_cli("index", photo_folder, "--rebuild", *SIZE_OPTION)
    assert exit_code == 0, stderr
    assert "indexed 7 new or changed" in stderr
    assert stored_spec(photo_folder).scales == (1.0, 0.7071)


@pytest.mark.parametrize(
    ("scales", "message"),
    [
        ("0.7,1", "--scales must start with 1"),
        ("1,1", "--scales must start with 1 (the full input size) and not repeat"),
        ("1,0.1", "--scales: up to 4 fractions between 0.25 and 1"),
        ("1,half", "--scales takes numbers separated by commas, e.g. 1,0.707; got '1,half'."),
    ],
)
def test_a_bad_scales_option_is_one_line_and_writes_nothing(
    photo_folder: Path, scales: str, message: str
) -> None:
    exit_code, stdout, stderr = run_cli("index", photo_folder, "--scales", scales)

    assert exit_code != 0 and stdout == ""
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not default_index_path(photo_folder).exists()


def test_scales_on_a_trained_classifier_is_a_clear_error(photo_folder: Path) -> None:
    from foldervision.retrieval.embedder import load_embedder
    from foldervision.retrieval.settings import IndexSettings

    run_folder = photo_folder / "runs" / "mine"
    run_folder.mkdir(parents=True)
    settings = IndexSettings(photo_folder, model=str(run_folder), scales=(1.0, 0.5))
    with pytest.raises(ValueError, match="--scales applies to the pretrained backbones"):
        load_embedder(settings)
