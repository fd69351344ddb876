"""Pixel signatures kept between runs, so `duplicates` decodes only new or changed files.

One SQLite file beside the index (INDEX.signatures.sqlite): a file's signature is reused while
its size and modification time are those the index recorded, like its vector. A cache that
cannot be written (a read-only folder) is simply not used.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from foldervision.retrieval.catalogue import FileState

SCHEMA = """CREATE TABLE IF NOT EXISTS signatures (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, signature BLOB
)"""
"""A NULL signature records a file that has none (unreadable, one flat colour)."""


def cache_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.stem + ".signatures.sqlite")


class SignatureCache:
    def __init__(self, connection: sqlite3.Connection | None) -> None:
        self._connection = connection

    @classmethod
    def open(cls, index_path: Path) -> SignatureCache:
        try:
            connection = sqlite3.connect(cache_path(index_path), check_same_thread=False)
            connection.execute(SCHEMA)
            connection.commit()
        except sqlite3.Error:
            return cls(None)
        return cls(connection)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def __enter__(self) -> SignatureCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def lookup(self, states: dict[str, FileState]) -> dict[str, np.ndarray | None]:
        """Signatures of the files whose recorded state still matches."""
        if self._connection is None:
            return {}
        found = {}
        rows = self._connection.execute("SELECT path, size, mtime_ns, signature FROM signatures")
        for path, size, mtime_ns, blob in rows:
            if states.get(path) == FileState(size, mtime_ns):
                found[path] = None if blob is None else np.frombuffer(blob, np.float32)
        return found

    def store(self, states: dict[str, FileState], signatures: dict[str, np.ndarray | None]) -> None:
        """Record new signatures and forget files that are no longer in the index."""
        if self._connection is None:
            return
        rows = [(path, states[path].size, states[path].mtime_ns,
                 None if signature is None else signature.astype(np.float32).tobytes())
                for path, signature in signatures.items()]  # fmt: skip
        try:
            with self._connection:
                self._connection.executemany(
                    "INSERT OR REPLACE INTO signatures VALUES (?, ?, ?, ?)", rows
                )
                known = {path for (path,) in self._connection.execute(
                    "SELECT path FROM signatures")}  # fmt: skip
                gone = [(path,) for path in known - states.keys()]
                self._connection.executemany("DELETE FROM signatures WHERE path = ?", gone)
        except sqlite3.Error:
            pass  # a cache that cannot be written costs time on the next run, nothing else
