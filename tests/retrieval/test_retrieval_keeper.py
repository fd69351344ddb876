"""The suggested copy to keep, decided from real files' headers, one rule at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_retrieval_duplicates import photo

from foldervision.retrieval.keeper import (
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    GPS_IFD,
    MAKE,
    MODEL,
    choose_keeper,
    is_protected,
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
        (["small.jpg", "big.jpg"], "big.jpg", "most pixels (300x200 against 150x100)"),
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
