"""The catalogue's `photos` table: each indexed file's metadata, and filters as SQL.

One row per row of `files` (`file_id`), written with the file's vector in the same transaction
and dropped with it by a trigger. An index made before this table existed gets it on its next
open; its files are then read for metadata only (never embedded again) on the next update
(`ImageIndex.update`, `missing`). `PhotoRecords` shares the catalogue's connection: it is the
catalogue's own room for photo facts, reached as `Catalogue.photos`.

A `PhotoFilter` becomes a WHERE clause over `files` joined with `photos` (`matching_ids`,
`entries`): the dates compare as text ("YYYY-MM-DDTHH:MM:SS" sorts in time order), the camera
through `camera_key` (make and model, case-folded when written), the folder as a range of
paths (so SQLite walks the paths' own index).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.photo_metadata import PhotoMetadata

PHOTOS_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    file_id INTEGER PRIMARY KEY,
    taken TEXT NOT NULL,
    taken_source TEXT NOT NULL,
    taken_offset TEXT,
    make TEXT,
    model TEXT,
    camera_key TEXT,
    latitude REAL,
    longitude REAL,
    width INTEGER,
    height INTEGER,
    format TEXT
);
CREATE INDEX IF NOT EXISTS photos_taken ON photos (taken);
CREATE TRIGGER IF NOT EXISTS files_photos_delete AFTER DELETE ON files
BEGIN DELETE FROM photos WHERE file_id = old.id; END;
"""

METADATA_COLUMNS = (
    "taken", "taken_source", "taken_offset", "make", "model", "latitude", "longitude", "width",
    "height", "format",
)  # fmt: skip
"""The `PhotoMetadata` fields, in its order, as the table's columns."""

SORTS = ("taken", "path")
"""Listing orders: newest first (files without a date last), or by path."""
_ORDER_BY = {"taken": "p.taken IS NULL, p.taken DESC, f.path", "path": "f.path"}
_FROM = "FROM files f LEFT JOIN photos p ON p.file_id = f.id"


@dataclass(frozen=True)
class PhotoEntry:
    """One indexed file for a listing: its path relative to the database, and its metadata
    (None until the next update reads it)."""

    path: str
    metadata: PhotoMetadata | None

    def to_dict(self) -> dict[str, Any]:
        details = self.metadata.to_dict() if self.metadata else {}
        return {"path": self.path, **details}


class PhotoRecords:
    """Reads and writes `photos` on the catalogue's connection (writes inside its transaction)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def available(self) -> bool:
        """False for an index opened read-only before its first update with this version."""
        found = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'photos'"
        )
        return found.fetchone() is not None

    def record(self, rows: Sequence[tuple[int, PhotoMetadata]]) -> None:
        """Add or replace the metadata of these file ids. Call inside `transaction()`."""
        columns = ", ".join(("file_id", "camera_key", *METADATA_COLUMNS))
        marks = ", ".join("?" * (2 + len(METADATA_COLUMNS)))
        self._connection.executemany(
            f"INSERT OR REPLACE INTO photos ({columns}) VALUES ({marks})",
            [
                (int(file_id), _camera_key(metadata), *_values(metadata))
                for file_id, metadata in rows
            ],
        )

    def count(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM photos").fetchone()[0]

    def missing(self, limit: int) -> list[tuple[int, str, int]]:
        """Up to `limit` (id, path, mtime_ns) of indexed files with no metadata yet."""
        return self._connection.execute(
            "SELECT f.id, f.path, f.mtime_ns FROM files f WHERE NOT EXISTS "
            "(SELECT 1 FROM photos p WHERE p.file_id = f.id) ORDER BY f.id LIMIT ?",
            (limit,),
        ).fetchall()

    def matching_ids(self, photo_filter: PhotoFilter) -> np.ndarray:
        """The ids of the indexed files the filter keeps, in increasing order."""
        where, parameters = where_clause(photo_filter)
        rows = self._connection.execute(f"SELECT f.id {_FROM}{where} ORDER BY f.id", parameters)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def entries(
        self, photo_filter: PhotoFilter, sort: str = "taken", offset: int = 0, limit: int = 100
    ) -> list[PhotoEntry]:
        """A page of the files the filter keeps, with their metadata, in `sort` order."""
        if sort not in SORTS:
            raise ValueError(f"Unknown sort {sort!r}; use one of {', '.join(SORTS)}.")
        where, parameters = where_clause(photo_filter)
        columns = ", ".join(f"p.{column}" for column in METADATA_COLUMNS)
        rows = self._connection.execute(
            f"SELECT f.path, p.file_id, {columns} {_FROM}{where} ORDER BY {_ORDER_BY[sort]} "
            "LIMIT ? OFFSET ?",
            [*parameters, max(0, limit), max(0, offset)],
        )
        return [
            PhotoEntry(path, PhotoMetadata(*values) if file_id is not None else None)
            for path, file_id, *values in rows
        ]

    def taken_of(self, ids: Sequence[int]) -> dict[int, str]:
        """Capture times by file id (ids without metadata are left out)."""
        rows = self._connection.execute(
            "SELECT file_id, taken FROM photos WHERE file_id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return dict(rows.fetchall())

    def counts(self, *expressions: str) -> list[tuple[Any, ...]]:
        """(values..., files) per distinct value of column expressions over `photos` ("format";
        "make", "model"; "substr(taken, 1, 4)"), most files first: what `foldervision info`
        summarises."""
        positions = ", ".join(str(number) for number in range(1, len(expressions) + 1))
        return self._connection.execute(
            f"SELECT {', '.join(expressions)}, COUNT(*) FROM photos GROUP BY {positions} "
            f"ORDER BY COUNT(*) DESC, {positions}"
        ).fetchall()

    def folders(self) -> list[tuple[str, int]]:
        """(folder, indexed files directly in it) for each folder holding any, in path order;
        "" is the database folder itself. `rtrim` drops the file name: every character but
        '/' from the end."""
        rows = self._connection.execute(
            "SELECT rtrim(path, replace(path, '/', '')) AS folder, COUNT(*) FROM files "
            "GROUP BY folder ORDER BY folder"
        )
        return [(folder.rstrip("/"), files) for folder, files in rows]

    def taken_range(self) -> tuple[str | None, str | None]:
        row = self._connection.execute("SELECT MIN(taken), MAX(taken) FROM photos").fetchone()
        return row[0], row[1]


def where_clause(photo_filter: PhotoFilter) -> tuple[str, list[object]]:
    """ " WHERE ..." over `files f` joined with `photos p`, and its parameters ("" for none)."""
    clauses: list[str] = []
    parameters: list[object] = []
    if photo_filter.taken_after:
        clauses.append("p.taken >= ?")
        parameters.append(photo_filter.taken_after)
    if photo_filter.taken_before:
        clauses.append("p.taken < ?")
        parameters.append(photo_filter.taken_before)
    if photo_filter.camera:
        clauses.append("instr(p.camera_key, ?) > 0")
        parameters.append(photo_filter.camera.casefold())
    if photo_filter.under:
        # Paths below "a/b" are those from "a/b/" up to, not including, "a/b0" ('0' follows '/').
        clauses.append("f.path >= ? AND f.path < ?")
        parameters.extend([f"{photo_filter.under}/", f"{photo_filter.under}0"])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), parameters


def _camera_key(metadata: PhotoMetadata) -> str | None:
    """Make and model as one case-folded text: `--camera` matches a substring of it."""
    text = " ".join(part for part in (metadata.make, metadata.model) if part)
    return text.casefold() or None


def _values(metadata: PhotoMetadata) -> tuple[object, ...]:
    return tuple(getattr(metadata, column) for column in METADATA_COLUMNS)
