"""Large photos decoded at the size the network needs: JPEG DCT scaling, box reduction for other
formats, and JPEGs above the bomb limit read at reduced scale instead of refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_fixtures import oversized_png_header
from PIL import Image

from foldervision.images import ImageLoadError, decode_image_bytes, load_image

BILINEAR = Image.Resampling.BILINEAR


def astronaut(side: int) -> Image.Image:
    """A real photo (scikit-image's bundled astronaut), upscaled to `side` px."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def bomb_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12000 x 8000 (96 MP, over the 89.5-MP limit): a grey ramp, a few hundred KB at quality 20."""
    ramp = Image.linear_gradient("L").resize((12000, 8000), BILINEAR)
    path = tmp_path_factory.mktemp("bomb") / "panorama.jpg"
    ramp.save(path, quality=20)
    return path


def test_a_photo_under_twice_the_side_decodes_the_same_either_way(tmp_path: Path) -> None:
    astronaut(440).save(tmp_path / "photo.jpg", quality=90)
    astronaut(440).save(tmp_path / "photo.png")
    for name in ("photo.jpg", "photo.png"):
        whole = load_image(tmp_path / name, 224, decoding="full")
        np.testing.assert_array_equal(load_image(tmp_path / name, 224, decoding="scaled"), whole)


def test_a_large_jpeg_is_dct_scaled_to_no_less_than_twice_the_side(tmp_path: Path) -> None:
    astronaut(2000).save(tmp_path / "large.jpg", quality=92)
    with Image.open(tmp_path / "large.jpg") as image:
        image.draft(None, (448, 448))  # 2000 // 448 = 4: Pillow decodes at 1/4, 500 px
        assert image.size == (500, 500)
        expected = np.asarray(image.convert("RGB").resize((224, 224), BILINEAR))

    scaled = load_image(tmp_path / "large.jpg", 224, decoding="scaled")
    whole = load_image(tmp_path / "large.jpg", 224, decoding="full")

    np.testing.assert_array_equal(scaled, expected)
    assert not np.array_equal(scaled, whole), "the default path must not decode every pixel"
    assert np.abs(scaled.astype(int) - whole.astype(int)).mean() < 1.0


def test_other_formats_are_box_reduced_before_the_final_resize(tmp_path: Path) -> None:
    astronaut(2000).save(tmp_path / "large.png")
    with Image.open(tmp_path / "large.png") as image:
        expected = np.asarray(image.convert("RGB").reduce(4).resize((224, 224), BILINEAR))

    scaled = load_image(tmp_path / "large.png", 224, decoding="scaled")
    whole = load_image(tmp_path / "large.png", 224, decoding="full")

    np.testing.assert_array_equal(scaled, expected)
    assert np.abs(scaled.astype(int) - whole.astype(int)).mean() < 1.0


def test_exif_orientation_is_applied_to_a_scaled_jpeg(tmp_path: Path) -> None:
    upright = astronaut(2000).resize((1500, 2000), BILINEAR)  # a portrait photo, as displayed
    exif = Image.Exif()
    exif[0x0112] = 6  # stored a quarter-turn back, as a phone stores it
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.jpg", exif=exif)

    scaled = load_image(tmp_path / "turned.jpg", (200, 150), decoding="scaled")
    expected = np.asarray(upright.resize((150, 200), BILINEAR))

    assert scaled.shape == (200, 150, 3)
    assert np.abs(scaled.astype(int) - expected.astype(int)).mean() < 1.5


def test_a_jpeg_above_the_bomb_limit_is_read_at_reduced_scale(bomb_jpeg: Path) -> None:
    with pytest.warns(Image.DecompressionBombWarning):  # over MAX_IMAGE_PIXELS for Pillow too
        Image.open(bomb_jpeg).close()
    scaled = load_image(bomb_jpeg, 224, color_mode="grayscale", decoding="scaled")
    ramp = np.asarray(Image.linear_gradient("L").resize((224, 224), BILINEAR))

    assert scaled.shape == (224, 224, 1)
    assert np.abs(scaled[:, :, 0].astype(int) - ramp.astype(int)).mean() < 3
    uploaded = decode_image_bytes(bomb_jpeg.read_bytes(), "upload.jpg", 224, decoding="scaled")
    assert uploaded.shape == (224, 224, 3)


def test_a_jpeg_above_the_limit_is_refused_when_whole_or_too_large_even_scaled(
    bomb_jpeg: Path,
) -> None:
    with pytest.raises(ImageLoadError, match="panorama.jpg: refused.*decompression bomb"):
        load_image(bomb_jpeg, 224, decoding="full")
    with pytest.raises(ImageLoadError, match="panorama.jpg: refused"):
        load_image(bomb_jpeg, 4000, decoding="scaled")  # twice 4000 px: no scale fits under it


@pytest.mark.parametrize("decoding", ["scaled", "full"])
def test_a_png_above_the_limit_is_refused_in_one_line(tmp_path: Path, decoding: str) -> None:
    (tmp_path / "panorama.png").write_bytes(oversized_png_header(12000, 8000))
    with pytest.raises(ImageLoadError) as refused:
        load_image(tmp_path / "panorama.png", 224, decoding=decoding)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'panorama.png'}: refused")


def test_an_unknown_decoding_is_named() -> None:
    with pytest.raises(ValueError, match="Unknown decoding 'draft'; use one of scaled, full"):
        load_image(Path("any.jpg"), 224, decoding="draft")
