"""Phone photo formats: HEIC/HEIF (pillow-heif) and AVIF, written here by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_fixtures import real_photo
from PIL import Image

import foldervision.images as images
from foldervision.datasets import scan_labelled_folder
from foldervision.images import ImageLoadError, is_image_file, list_image_files, load_image

PHONE_FORMATS = {"photo.heic": "HEIF", "PHOTO.HEIF": "HEIF", "Photo.Avif": "AVIF"}
"""File name -> Pillow format name; odd cases on purpose."""

QUARTER_TURNS_OF_ORIENTATION = {6: -1, 8: 1, 3: 2}
"""EXIF orientation -> np.rot90 turns that bring the stored pixels upright."""


def save_phone_photo(image: Image.Image, path: Path, orientation: int = 1) -> None:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, format=PHONE_FORMATS[path.name], quality=90, exif=exif.tobytes())


@pytest.fixture()
def phone_folder(tmp_path: Path) -> Path:
    for name in PHONE_FORMATS:
        save_phone_photo(real_photo(), tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_heic_heif_and_avif_count_as_images_in_any_case(phone_folder: Path) -> None:
    assert {path.name for path in list_image_files(phone_folder)} == set(PHONE_FORMATS)
    assert all(is_image_file(name) for name in ("a.HEIC", "b.heif", "c.AVIF", "d.Heic"))


@pytest.mark.parametrize("name", sorted(PHONE_FORMATS))
def test_phone_formats_decode_to_the_photo(phone_folder: Path, name: str) -> None:
    original = np.asarray(real_photo(), dtype=int)  # 96 x 64
    pixels = load_image(phone_folder / name)
    assert pixels.shape == original.shape
    assert np.abs(pixels.astype(int) - original).mean() < 6  # lossy, but the same picture


@pytest.mark.parametrize("name", ["photo.heic", "Photo.Avif"])
@pytest.mark.parametrize("orientation", sorted(QUARTER_TURNS_OF_ORIENTATION))
def test_exif_orientation_of_a_phone_photo_is_applied_once(
    tmp_path: Path, name: str, orientation: int
) -> None:
    stored = np.asarray(real_photo())
    save_phone_photo(Image.fromarray(stored), tmp_path / name, orientation)
    upright = np.rot90(stored, QUARTER_TURNS_OF_ORIENTATION[orientation]).astype(int)

    pixels = load_image(tmp_path / name).astype(int)

    assert pixels.shape == upright.shape
    assert np.abs(pixels - upright).mean() < 6
    if orientation == 3:  # a half turn keeps the shape: make sure it was not left out or doubled
        assert np.abs(pixels - stored.astype(int)).mean() > 20


def test_a_labelled_folder_for_training_counts_phone_photos(tmp_path: Path) -> None:
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for number in range(2):
            save_phone_photo(real_photo(), tmp_path / label / ("photo.heic", "PHOTO.HEIF")[number])
    labelled = scan_labelled_folder(tmp_path, min_images_per_class=2)
    assert labelled.class_names == ["cats", "dogs"]
    assert len(labelled.paths) == 4


def test_unreadable_heic_says_how_to_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    monkeypatch.setattr(images, "HEIF_READABLE", False)  # as on an install without pillow-heif
    with pytest.raises(ImageLoadError, match=r"IMG_0001.HEIC: .*pip install pillow-heif"):
        load_image(tmp_path / "IMG_0001.HEIC")
