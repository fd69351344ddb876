"""A contact sheet: one row per query, the query first, then its matches with rank and distance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.atomic import atomic_path
from foldervision.images import ImageLoadError, load_image
from foldervision.retrieval.search import QueryResult

THUMBNAIL_SIZE = 160
TILE_INCHES = 2.0
SHEET_DPI = 100


def write_contact_sheet(results: Sequence[QueryResult], path: str | os.PathLike[str]) -> Path:
    """Draw the queries and their matches into one PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    if not results:
        raise ValueError(f"{path}: no query results to draw; check the query images.")
    columns = 1 + max(len(result.matches) for result in results)
    figure, axes = pyplot.subplots(
        len(results),
        columns,
        figsize=(TILE_INCHES * columns, (TILE_INCHES + 0.4) * len(results)),
        squeeze=False,
    )
    for row, result in enumerate(results):
        _draw_tile(axes[row][0], result.query, f"query\n{Path(result.query).name}", "tab:blue")
        for column, match in enumerate(result.matches, start=1):
            caption = f"#{match.rank}  d={match.distance:.3f}\n{Path(match.path).name}"
            _draw_tile(axes[row][column], match.path, caption, "black")
        for column in range(len(result.matches) + 1, columns):
            axes[row][column].axis("off")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=SHEET_DPI)
    pyplot.close(figure)
    return path


def _draw_tile(axis: Any, image_path: str, caption: str, color: str) -> None:
    axis.imshow(_thumbnail(image_path), cmap="gray", vmin=0, vmax=255)
    axis.set_title(caption, fontsize=8, color=color)
    axis.set_xticks([])
    axis.set_yticks([])


def _thumbnail(image_path: str) -> np.ndarray:
    """The image through the project's loader; a file that vanished since indexing shows grey."""
    try:
        return load_image(image_path, THUMBNAIL_SIZE, "rgb")
    except ImageLoadError:
        return np.full((THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), 128, dtype=np.uint8)
