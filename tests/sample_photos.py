"""Small real photo folders from scikit-image's bundled pictures (no download), for tests
that index and search end to end."""

from __future__ import annotations

from pathlib import Path

import skimage.data
from PIL import Image


def four_photos_and_a_coffee_crop(tmp_path: Path) -> tuple[Path, Path]:
    """`tmp_path/photos` with chelsea, coffee, astronaut and rocket as JPEGs, and a crop of
    the coffee photo beside it (a query whose right answer is coffee.jpg)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(folder / f"{name}.jpg")
    query = tmp_path / "coffee crop.png"
    Image.fromarray(skimage.data.coffee()[60:340, 150:450]).save(query)
    return folder, query
