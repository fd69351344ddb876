"""The suggested copy to keep, decided from real files' headers, one rule at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_retrieval_duplicates import photo, screenshot, with_caption

from foldervision.retrieval.keeper import (
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    GPS_IFD,
    MAKE,
    MODEL,
    choose_from_facts,
    choose_keeper,
    is_protected,
    look_at_photo,
    read_facts,
)


def exif(captured: str | None = None, camera: bool = False, gps: bool = False) -> Image.Exif:
    tags = Image.Exif()
    if camera:
        tags[MAKE], tags[MODEL] = "Canon", "EOS 80D"
    if captured:
        tags.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = captured
    if gps:
        tags.get_ifd(GPS_IFD)[1] = "N"
        tags.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)
    return tags


@pytest.fixture
def album(tmp_path: Path) -> Path:
    image = photo("chelsea", 300)
    (tmp_path / "deep" / "folder").mkdir(parents=True)
    image.save(tmp_path / "big.jpg", quality=90)
    image.resize((image.width // 2, image.height // 2)).save(tmp_path / "small.jpg", quality=90)
    image.save(tmp_path / "q30.jpg", quality=30)
    image.save(tmp_path / "plain.png")
    image.save(tmp_path / "camera.jpg", quality=90, exif=exif("2019:05:01 10:22:00", True, True))
    image.save(tmp_path / "later.jpg", quality=90, exif=exif("2021:01:01 08:00:00", True, True))
    image.save(tmp_path / "deep" / "folder" / "copy.jpg", quality=90)
    return tmp_path


def test_headers_give_size_format_and_metadata(album: Path) -> None:
    facts = read_facts(album, "camera.jpg")
    assert (facts.width, facts.height, facts.format) == (300, 200, "JPEG")
    assert facts.captured == "2019:05:01 10:22:00" and facts.camera == "Canon EOS 80D"
    assert facts.gps and facts.metadata == ["capture time", "camera", "GPS"]
    assert read_facts(album, "plain.png").metadata == []
    assert read_facts(album, "gone.jpg").pixels == 0


@pytest.mark.parametrize(
    ("files", "keep", "why"),
    [
        (["small.jpg", "big.jpg"], "big.jpg", "most photo pixels (300x200 against 150x100)"),
        (["q30.jpg", "big.jpg"], "big.jpg", "least compressed JPEG"),
        (["plain.png", "camera.jpg"], "camera.jpg", "richest metadata (capture time, camera, GPS)"),
        (["later.jpg", "camera.jpg"], "camera.jpg", "earliest capture time (2019:05:01 10:22:00)"),
        (["deep/folder/copy.jpg", "big.jpg"], "big.jpg", "shortest path"),
    ],
)
def test_each_rule_decides_when_the_ones_before_it_tie(
    album: Path, files: list[str], keep: str, why: str
) -> None:
    chosen, reason = choose_keeper(album, files)
    assert chosen == keep
    assert reason.startswith(why)


def test_a_bigger_png_of_a_jpeg_is_not_less_compressed(album: Path) -> None:
    """Formats are not compared by bytes: the JPEG's metadata decides instead."""
    chosen, reason = choose_keeper(album, ["plain.png", "later.jpg"])
    assert chosen == "later.jpg" and reason.startswith("richest metadata")


def test_a_protected_folder_keeps_its_copy_even_a_smaller_one(album: Path) -> None:
    chosen, reason = choose_keeper(album, ["big.jpg", "deep/folder/copy.jpg"], ["deep"])
    assert chosen == "deep/folder/copy.jpg" and reason.startswith("in a protected folder")
    assert is_protected("deep/folder/copy.jpg", ["deep"])
    assert not is_protected("deeper/copy.jpg", ["deep"])
    assert is_protected("any/file.jpg", ["."])


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """One photo and the copies that change its pixel count. The copies get the shorter
    paths, so only the size rule can keep the original. The enlargement is a PNG: a JPEG
    enlargement of a photo this sharp differs from the photo enlarged again by more than
    MAX_EXTRA_DETAIL (re-compression), and is kept, as by pixel count (docs/benchmarks.md)."""
    original = photo("astronaut", 200)
    (tmp_path / "camera roll" / "2019").mkdir(parents=True)
    original.save(tmp_path / "camera roll" / "2019" / "original.jpg", quality=90)
    with_caption(original).save(tmp_path / "captioned.jpg", quality=90)
    screenshot(original).save(tmp_path / "screen.png")
    original.resize((100, 100), Image.BICUBIC).save(tmp_path / "small.jpg", quality=90)
    with Image.open(tmp_path / "camera roll" / "2019" / "original.jpg") as saved:
        saved.resize((400, 400), Image.BICUBIC).save(tmp_path / "big.png")
    return tmp_path


ORIGINAL = "camera roll/2019/original.jpg"


def test_bars_and_margins_are_not_the_photo(copies: Path) -> None:
    def box(path: str) -> tuple[int, int, int, int] | None:
        return look_at_photo(copies, read_facts(copies, path)).photo

    assert box(ORIGINAL) == (0, 0, 200, 200)
    assert box("captioned.jpg") == (0, 0, 200, 200)  # the 24-px caption bar is left out
    assert box("screen.png") == (15, 40, 215, 240)  # margins, status and navigation bars
    assert box("big.png") == (0, 0, 400, 400)


@pytest.mark.parametrize(
    ("copy", "why"),
    [
        ("captioned.jpg", "captioned.jpg adds bars or margins (200x200 photo in 200x224)"),
        ("screen.png", "screen.png adds bars or margins (200x200 photo in 230x290)"),
        ("small.jpg", "most photo pixels (200x200 against 100x100)"),
        ("big.png", "big.png is only enlarged (400x400 from 200x200)"),
    ],
)
def test_the_original_is_kept_against_each_copy(copies: Path, copy: str, why: str) -> None:
    """Headers alone (the canvas) would keep the captioned copy, the screenshot and the
    enlargement: each has more pixels, none more of the photo."""
    chosen, reason = choose_keeper(copies, [copy, ORIGINAL])
    assert chosen == ORIGINAL
    assert reason.startswith(why)
    headers = [read_facts(copies, path) for path in (copy, ORIGINAL)]
    assert (choose_from_facts(headers)[0] == copy) == (copy != "small.jpg")


def test_the_original_is_kept_among_all_its_copies(copies: Path) -> None:
    files = ["big.png", "captioned.jpg", ORIGINAL, "screen.png", "small.jpg"]
    chosen, reason = choose_keeper(copies, files)
    assert chosen == ORIGINAL
    assert reason.startswith("most photo pixels (200x200 against 100x100)")
    assert "big.png is only enlarged" in reason


def test_two_enlargements_of_one_photo_both_lose_to_it(tmp_path: Path) -> None:
    """Neither enlargement enlarges the other (each has detail the other lost), so each is
    compared with every smaller copy, down to the photo itself."""
    original = photo("chelsea", 300)
    original.save(tmp_path / "chelsea.png")
    for factor in (1.5, 2):
        size = (round(original.width * factor), round(original.height * factor))
        original.resize(size, Image.LANCZOS).save(tmp_path / f"x{factor}.png")
    chosen, reason = choose_keeper(tmp_path, ["x1.5.png", "x2.png", "chelsea.png"])
    assert chosen == "chelsea.png"
    assert "x2.png is only enlarged (600x400 from 300x200)" in reason
