"""Photo metadata from headers only: capture time, camera, place, displayed size, on real files."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from photo_library import FIXED_FILE_TIME, camera_exif, write_photo
from PIL import Image, ImageFile

from foldervision.images import load_image
from foldervision.retrieval.photo_metadata import PhotoMetadata, read_photo_metadata

PIXELS = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((64, 48)))
"""A real photo, 64 wide and 48 high."""


def metadata_of(path: Path) -> PhotoMetadata:
    return read_photo_metadata(path, path.stat().st_mtime_ns)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_a_cameras_exif_is_read_in_every_format_that_carries_it(
    tmp_path: Path, suffix: str
) -> None:
    exif = camera_exif(
        taken="2023:06:01 18:30:05", offset="+02:00", make="Apple", model="iPhone 12",
        position=(48.858222, -2.2945),
    )  # fmt: skip
    metadata = metadata_of(write_photo(tmp_path / f"photo{suffix}", PIXELS, exif))

    assert metadata.taken == "2023-06-01T18:30:05"
    assert metadata.taken_source == "exif" and metadata.taken_offset == "+02:00"
    assert (metadata.make, metadata.model) == ("Apple", "iPhone 12")
    assert metadata.camera == "Apple iPhone 12"
    assert (metadata.width, metadata.height) == (64, 48)
    assert metadata.latitude == pytest.approx(48.858222, abs=1e-5)
    assert metadata.longitude == pytest.approx(-2.2945, abs=1e-5)


def test_south_and_west_are_negative_and_no_gps_is_none(tmp_path: Path) -> None:
    south_west = metadata_of(
        write_photo(tmp_path / "rio.jpg", PIXELS, camera_exif(position=(-22.9519, -43.2105)))
    )
    plain = metadata_of(write_photo(tmp_path / "plain.jpg", PIXELS, camera_exif(make="Canon")))

    assert south_west.latitude == pytest.approx(-22.9519, abs=1e-5)
    assert south_west.longitude == pytest.approx(-43.2105, abs=1e-5)
    assert (plain.latitude, plain.longitude) == (None, None)


def test_without_a_capture_date_the_file_time_is_used_and_flagged(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "scan.png", PIXELS, file_time=FIXED_FILE_TIME)
    metadata = metadata_of(path)

    assert metadata.taken_source == "file" and metadata.taken_offset is None
    assert metadata.taken == datetime.fromtimestamp(FIXED_FILE_TIME).strftime("%Y-%m-%dT%H:%M:%S")
    assert (metadata.make, metadata.model, metadata.camera) == (None, None, None)
    assert metadata.format == "PNG"


def test_an_unusable_exif_date_falls_back_to_the_file_time(tmp_path: Path) -> None:
    exif = camera_exif(taken="0000:00:00 00:00:00", make="NIKON CORPORATION", model="NIKON D750")
    metadata = metadata_of(write_photo(tmp_path / "blank date.jpg", PIXELS, exif))

    assert metadata.taken_source == "file"
    assert metadata.camera == "NIKON D750"  # the model already names the make


@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 7, 8])
def test_width_and_height_are_as_displayed(tmp_path: Path, orientation: int) -> None:
    path = write_photo(
        tmp_path / f"turned {orientation}.jpg", PIXELS, camera_exif(orientation=orientation)
    )
    metadata = metadata_of(path)
    displayed = load_image(path)  # the loader applies the orientation

    assert (metadata.height, metadata.width) == displayed.shape[:2]
    assert (metadata.width, metadata.height) == ((48, 64) if orientation >= 5 else (64, 48))


def test_no_pixel_is_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers only: reading metadata never calls the decoder of any of these formats."""
    paths = [
        write_photo(tmp_path / f"photo{suffix}", PIXELS, camera_exif(make="Apple", model="X"))
        for suffix in (".jpg", ".png", ".webp", ".tiff")
    ]

    def refuse_to_decode(image: ImageFile.ImageFile):
        raise AssertionError(f"{image.filename}: decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    assert [metadata_of(path).make for path in paths] == ["Apple"] * 4


def test_a_jpeg_past_the_bomb_limit_still_gives_its_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such photos are read at reduced scale, so their dates and cameras count too."""
    path = write_photo(tmp_path / "panorama.jpg", PIXELS, camera_exif(taken="2022:01:02 03:04:05"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 48 is now past twice the limit

    metadata = metadata_of(path)

    assert (metadata.taken, metadata.width, metadata.height) == ("2022-01-02T03:04:05", 64, 48)


def test_an_unreadable_file_still_gets_its_file_time(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg at all")
    os.utime(path, (FIXED_FILE_TIME, FIXED_FILE_TIME))

    metadata = metadata_of(path)

    assert metadata.taken_source == "file" and metadata.format is None
    assert metadata.width is None


def test_heic_metadata_is_read_from_its_headers(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    path = tmp_path / "IMG_0001.HEIC"
    exif = camera_exif(taken="2024:05:06 07:08:09", make="Apple", model="iPhone 15", orientation=6)
    try:
        Image.fromarray(PIXELS).save(path, exif=exif, quality=80)
    except (OSError, ValueError, KeyError) as error:  # a build without an HEVC encoder
        pytest.skip(f"cannot write HEIC here: {error}")

    metadata = metadata_of(path)

    assert (metadata.taken, metadata.camera) == ("2024-05-06T07:08:09", "Apple iPhone 15")
    assert metadata.format == "HEIF"
    assert (metadata.height, metadata.width) == load_image(path).shape[:2]
