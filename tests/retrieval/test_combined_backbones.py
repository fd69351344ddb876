"""`--model A+B`: pretrained backbones side by side, one vector per photo, checked against
each backbone alone on real photos, through the ONNX file that index and search run and
through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from sample_photos import four_photos_and_a_coffee_crop
from user_process import run_cli

from foldervision.models.pretrained import get_pretrained, pretrained_backbones

PAIR = "mobilenetv2+efficientnet-lite0"


def weights_or_skip(*names: str) -> None:
    for name in names:
        backbone = get_pretrained(name)
        if backbone.packaged_checkpoint() is None:
            pytest.skip(f"{backbone.pin.requirement} is not installed ({backbone.install_command})")


def photo(name: str, size: int) -> np.ndarray:
    picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return np.asarray(picture.resize((size, size), Image.BILINEAR))


def test_a_combined_name_stands_for_its_backbones(tmp_path: Path) -> None:
    assert [backbone.name for backbone in pretrained_backbones(PAIR)] == PAIR.split("+")
    assert [backbone.name for backbone in pretrained_backbones("mobilenetv2")] == ["mobilenetv2"]
    assert pretrained_backbones("mobilenetv2+mobilenetv2") == ()
    assert pretrained_backbones("mobilenetv2+resnet50") == ()
    run_folder = tmp_path / "runs+new"  # a trained model's folder whose name has a "+"
    run_folder.mkdir()
    assert pretrained_backbones(str(run_folder)) == ()


def test_the_vector_is_each_backbones_own_vector_side_by_side() -> None:
    """At the parts' shared size (224 px) the combined vector, split in two and each half made
    unit length, is exactly what each backbone alone embeds (its scales included), and the
    halves weigh the same: the combined cosine is the mean of the parts' cosines."""
    from foldervision.retrieval.embedder import combined_embedder, pretrained_embedder

    weights_or_skip("mobilenetv2", "efficientnet-lite0")
    pixels = np.stack([photo(name, 224) for name in ("chelsea", "coffee", "astronaut")])
    combined = combined_embedder(PAIR.split("+"))
    assert combined.spec.model == PAIR and combined.spec.image_size == 224
    assert "mobilenetv2 out_relu 224px x1.0,0.7071" in combined.spec.layer
    vectors = combined.embed_pixels(pixels)
    assert vectors.shape == (3, 2560)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = [pretrained_embedder(name).embed_pixels(pixels) for name in PAIR.split("+")]
    halves = np.split(vectors, 2, axis=1)
    for half, own in zip(halves, alone, strict=True):
        np.testing.assert_allclose(np.linalg.norm(half, axis=1), np.sqrt(0.5), atol=1e-5)
        np.testing.assert_allclose(half * np.sqrt(2), own, atol=2e-5)
    mean_of_cosines = ((alone[0] @ alone[0].T) + (alone[1] @ alone[1].T)) / 2
    np.testing.assert_allclose(vectors @ vectors.T, mean_of_cosines, atol=3e-5)


def test_index_and_search_side_by_side_in_their_own_file(tmp_path: Path) -> None:
    """`index --model A+B` on real photos writes its own index beside the default one; a crop
    of the coffee photo finds the coffee photo first, and `serve`'s words for it name both."""
    weights_or_skip("mobilenetv2", "efficientnet-lite0")
    folder, query = four_photos_and_a_coffee_crop(tmp_path)

    indexed = run_cli("index", folder, "--model", PAIR)
    assert indexed.returncode == 0, indexed.stderr
    assert (folder / ".foldervision" / f"index.{PAIR}.sqlite").is_file()
    assert not (folder / ".foldervision" / "index.sqlite").exists()

    found = run_cli("search", query, "--database", folder, "--model", PAIR, "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout.strip().splitlines()[-1])
    assert Path(answer["results"][0]["path"]).name == "coffee.jpg"

    from foldervision.retrieval.spec import EmbedderSpec
    from foldervision.web.library_routes import model_in_words

    spec = EmbedderSpec(model=PAIR, weights="", image_size=224, color_mode="rgb", layer="")
    assert model_in_words(spec) == "MobileNetV2 + EfficientNet-Lite0 (ImageNet, side by side)"


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("--model", "mobilenetv2+resnet50"), "join two or more different pretrained backbones"),
        (("--model", PAIR, "--scales", "1,0.5"), "--scales does not apply to " + PAIR),
        (("--model", PAIR, "--image-size", "160"), "--image-size does not apply to " + PAIR),
    ],
)
def test_a_combination_that_cannot_run_is_one_clear_line(
    tmp_path: Path, arguments: tuple[str, ...], said: str
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.jpg")
    result = run_cli("index", folder, *arguments)
    assert result.returncode != 0
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / ".foldervision" / "index.sqlite").exists()
