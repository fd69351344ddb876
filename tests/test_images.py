"""The one image loader: every format and mode, bad files skipped and named, bombs refused."""

from __future__ import annotations

import numpy as np
import pytest
from image_fixtures import real_photo
from PIL import Image

from foldervision.images import (
    ImageLoadError,
    is_image_file,
    list_image_files,
    load_image,
    load_images,
)


def test_lists_images_case_insensitively_and_ignores_other_files(image_zoo):
    folder, names = image_zoo
    listed = {path.name for path in list_image_files(folder)}
    assert listed == set(names["good"]) | set(names["bad"])
    assert not listed & set(names["ignored"])
    assert is_image_file("A.JPG") and is_image_file("b.TiFf") and not is_image_file("c.txt")


@pytest.mark.parametrize("color_mode, channels", [("grayscale", 1), ("rgb", 3)])
def test_every_good_file_loads_at_the_requested_size(image_zoo, color_mode, channels):
    folder, names = image_zoo
    for name in names["good"]:
        pixels = load_image(folder / name, image_size=32, color_mode=color_mode)
        assert pixels.shape == (32, 32, channels), name
        assert pixels.dtype == np.uint8
        assert pixels.max() > pixels.min(), f"{name} decoded to a flat image"


def test_bad_files_are_skipped_and_named_while_good_ones_load(image_zoo):
    folder, names = image_zoo
    loaded = load_images(list_image_files(folder), image_size=28, color_mode="grayscale")
    assert {path.name for path in loaded.paths} == set(names["good"])
    assert loaded.pixels.shape == (len(names["good"]), 28, 28, 1)
    skipped_names = {item.path.rsplit("/", 1)[-1] for item in loaded.skipped}
    assert skipped_names == set(names["bad"])
    for item in loaded.skipped:
        assert item.path in item.reason, "the reason must name the file"


def test_decompression_bomb_is_refused_not_loaded(image_zoo):
    folder, _ = image_zoo
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(folder / "bomb.png", image_size=28)


def test_exif_orientation_is_applied(image_zoo):
    folder, _ = image_zoo
    pixels = load_image(folder / "exif rotated.jpg", color_mode="rgb")
    original = np.asarray(real_photo())
    assert pixels.shape[:2] == (original.shape[1], original.shape[0])  # 90° turn swaps sides


def test_whole_decoding_decodes_every_pixel_before_resizing(tmp_path):
    """Draft mode (decoding at 1/2 scale here) would change the pixels and so the vectors."""
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.jpg", quality=90)  # 512 px
    with Image.open(tmp_path / "astronaut.jpg") as image:
        expected = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))

    whole = load_image(tmp_path / "astronaut.jpg", 224, decoding="full")
    np.testing.assert_array_equal(whole, expected)


def test_sixteen_bit_image_is_rescaled_not_clipped(image_zoo):
    folder, _ = image_zoo
    eight_bit = load_image(folder / "digit L.png", color_mode="grayscale")
    sixteen_bit = load_image(folder / "digit 16bit.png", color_mode="grayscale")
    np.testing.assert_allclose(sixteen_bit.astype(int), eight_bit.astype(int), atol=1)


def test_transparency_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    image.save(tmp_path / "clear.png")
    pixels = load_image(tmp_path / "clear.png", color_mode="rgb")
    assert (pixels == 255).all()


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match="nothing.png"):
        load_image(tmp_path / "nothing.png")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        list_image_files(tmp_path / "absent")


def test_hidden_folders_such_as_an_index_are_not_listed(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "seen.png")
    (tmp_path / ".foldervision").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / ".foldervision" / "hidden.png")
    assert [path.name for path in list_image_files(tmp_path)] == ["seen.png"]
