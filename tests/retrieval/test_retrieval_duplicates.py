"""`foldervision duplicates`: planted groups of edited real photos are found, and nothing else."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance
from typer.testing import CliRunner
from user_process import run_cli

from foldervision.cli import app
from foldervision.retrieval.duplicates import PIXEL_MATCH, group_pairs, pixel_signature
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.stores import STORES

SIZE_OPTION = ["--image-size", "96"]


def photo(name: str) -> Image.Image:
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    image.thumbnail((200, 200))
    return image


def with_caption(image: Image.Image) -> Image.Image:
    framed = Image.new("RGB", (image.width, image.height + 24), "white")
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((4, image.height + 4), "holiday copy", fill="black")
    return framed


@pytest.fixture
def planted_folder(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    """Three groups of edited copies of skimage photos, plus two photos with no copy."""
    folder = tmp_path / "album"
    (folder / "copies").mkdir(parents=True)
    astronaut, chelsea, coffee = photo("astronaut"), photo("chelsea"), photo("coffee")
    astronaut.save(folder / "astronaut.jpg", quality=90)
    astronaut.resize((astronaut.width // 2, astronaut.height // 2)).save(
        folder / "copies" / "astronaut small.jpg", quality=90
    )
    with_caption(astronaut).save(folder / "copies" / "astronaut captioned.jpg", quality=90)
    chelsea.save(folder / "chelsea.jpg", quality=90)
    chelsea.crop((6, 6, chelsea.width - 6, chelsea.height - 6)).save(folder / "chelsea crop.png")
    chelsea.save(folder / "copies" / "chelsea.webp", quality=80)
    coffee.save(folder / "coffee.jpg", quality=90)
    ImageEnhance.Brightness(coffee).enhance(1.3).save(folder / "coffee bright.jpg", quality=40)
    photo("rocket").save(folder / "rocket.jpg", quality=90)
    photo("camera").save(folder / "camera.png")
    groups = [
        ["astronaut.jpg", "copies/astronaut captioned.jpg", "copies/astronaut small.jpg"],
        ["chelsea crop.png", "chelsea.jpg", "copies/chelsea.webp"],
        ["coffee bright.jpg", "coffee.jpg"],
    ]
    return folder, groups


def relative(paths: list[str], folder: Path) -> list[str]:
    return [Path(path).relative_to(folder).as_posix() for path in paths]


@pytest.mark.parametrize("store", STORES.names())
def test_duplicates_json_lists_exactly_the_planted_groups(
    planted_folder: tuple[Path, list[list[str]]], store: str, tmp_path: Path
) -> None:
    """As a user runs it: a fresh process, through every vector store."""
    folder, planted = planted_folder
    location = f"milvus:{tmp_path / 'vectors.db'}" if store == "milvus" else store

    result = run_cli("duplicates", folder, "--json", "--store", location, *SIZE_OPTION)

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(line) == {"files", "distances"} for line in lines)
    assert [relative(line["files"], folder) for line in lines] == planted
    for line in lines:
        assert len(line["distances"]) == len(line["files"]) and line["distances"][0] == 0.0
        assert all(0.0 <= distance < 1.0 for distance in line["distances"])
    assert "3 groups" in result.stderr


def test_duplicates_text_output_and_sheet(
    planted_folder: tuple[Path, list[list[str]]],
    cli_uses_session_embedder: Embedder,
    tmp_path: Path,
) -> None:
    folder, planted = planted_folder
    sheet = tmp_path / "duplicates.png"

    result = CliRunner().invoke(
        app, ["duplicates", str(folder), "--sheet", str(sheet), *SIZE_OPTION]
    )

    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [int(group) for group, _, _ in rows] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert relative([path for _, _, path in rows], folder) == [p for g in planted for p in g]
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.height > image.width / 4  # 3 rows


def test_a_threshold_of_zero_finds_only_byte_identical_pictures(
    planted_folder: tuple[Path, list[list[str]]], cli_uses_session_embedder: Embedder
) -> None:
    folder, _ = planted_folder
    (folder / "rocket again.jpg").write_bytes((folder / "rocket.jpg").read_bytes())

    result = CliRunner().invoke(
        app, ["duplicates", str(folder), "--json", "--threshold", "0", *SIZE_OPTION]
    )

    assert result.exit_code == 0, result.stderr
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert relative(line["files"], folder) == ["rocket again.jpg", "rocket.jpg"]


def test_group_pairs_joins_chains_with_union_find() -> None:
    pairs = [(1, 2, 0.1), (2, 3, 0.2), (7, 8, 0.1), (3, 1, 0.3)]
    assert sorted(group_pairs(pairs)) == [[1, 2, 3], [7, 8]]
    assert group_pairs([]) == []


def test_pixel_signatures_match_turned_and_brightened_copies_not_other_photos(
    tmp_path: Path,
) -> None:
    names = ("astronaut", "chelsea", "coffee", "rocket", "camera")
    signatures = {}
    for name in names:
        image = photo(name)
        image.save(tmp_path / f"{name}.jpg", quality=90)
        image.rotate(4, resample=Image.BICUBIC, fillcolor=(0, 0, 0)).save(
            tmp_path / f"{name} turned.jpg", quality=90
        )
        ImageEnhance.Brightness(image).enhance(1.3).save(tmp_path / f"{name} bright.jpg")
        for suffix in ("", " turned", " bright"):
            signatures[name + suffix] = pixel_signature(tmp_path / f"{name}{suffix}.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")

    bright = [signatures[name] @ signatures[f"{name} bright"] for name in names]
    turned = [signatures[name] @ signatures[f"{name} turned"] for name in names]
    others = [signatures[a] @ signatures[b] for a, b in itertools.combinations(names, 2)]
    assert min(bright) >= 0.95  # blind to brightness
    # Turning 4 degrees costs more on these small (200 px), detailed photos: not all pass,
    # but every copy stays far above every pair of different photos.
    assert sum(score >= PIXEL_MATCH for score in turned) >= 3 and min(turned) > 0.5
    assert max(others) < PIXEL_MATCH / 2
    assert pixel_signature(tmp_path / "broken.jpg") is None
