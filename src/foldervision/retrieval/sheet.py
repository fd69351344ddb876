"""A contact sheet: one row per query, the query first, then its matches with rank and distance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from foldervision.contact_sheet import Tile, write_tile_sheet
from foldervision.retrieval.search import QueryResult


def write_contact_sheet(results: Sequence[QueryResult], path: str | os.PathLike[str]) -> Path:
    """Draw the queries and their matches into one PNG, written atomically."""
    if not results:
        raise ValueError(f"{path}: no query results to draw; check the query images.")
    rows = [
        [
            Tile(result.query, f"query\n{Path(result.query).name}", "tab:blue"),
            *(
                Tile(match.path, f"#{match.rank}  d={match.distance:.3f}\n{Path(match.path).name}")
                for match in result.matches
            ),
        ]
        for result in results
    ]
    return write_tile_sheet(rows, path)
