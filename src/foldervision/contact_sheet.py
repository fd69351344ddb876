"""A contact sheet: rows of captioned thumbnails in one PNG (search results, mistakes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.atomic import atomic_path
from foldervision.images import ImageLoadError, load_image

THUMBNAIL_SIZE = 160
TILE_INCHES = 2.0
SHEET_DPI = 100


@dataclass(frozen=True)
class Tile:
    """One thumbnail: the image file, the caption above it and the caption's colour."""

    path: str
    caption: str
    color: str = "black"


def write_tile_sheet(rows: Sequence[Sequence[Tile]], path: str | os.PathLike[str]) -> Path:
    """Draw the rows of tiles into one PNG (short rows padded with blanks), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    if not rows or not any(rows):
        raise ValueError(f"{path}: nothing to draw on the contact sheet.")
    columns = max(len(row) for row in rows)
    figure, axes = pyplot.subplots(
        len(rows),
        columns,
        figsize=(TILE_INCHES * columns, (TILE_INCHES + 0.4) * len(rows)),
        squeeze=False,
    )
    for row_index, row in enumerate(rows):
        for column, tile in enumerate(row):
            _draw_tile(axes[row_index][column], tile)
        for column in range(len(row), columns):
            axes[row_index][column].axis("off")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=SHEET_DPI)
    pyplot.close(figure)
    return path


def _draw_tile(axis: Any, tile: Tile) -> None:
    axis.imshow(_thumbnail(tile.path), cmap="gray", vmin=0, vmax=255)
    axis.set_title(tile.caption, fontsize=8, color=tile.color)
    axis.set_xticks([])
    axis.set_yticks([])


def _thumbnail(image_path: str) -> np.ndarray:
    """The image through the project's loader; a file that has vanished shows grey."""
    try:
        return load_image(image_path, THUMBNAIL_SIZE, "rgb")
    except ImageLoadError:
        return np.full((THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), 128, dtype=np.uint8)
