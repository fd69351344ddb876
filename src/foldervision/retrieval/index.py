"""A persistent, incremental index of a database folder: one SQLite file holds everything.

Table `images` keeps each file's path (relative to the database folder), size, mtime and its
float32 vector; `skipped` keeps the files that could not be decoded and why; `settings` keeps
the embedder spec the vectors came from. Each batch of vectors is committed in one transaction,
so an interrupted run keeps what it finished, loses nothing and, since a path is the primary
key, can never store a file twice: the next run simply embeds what is still missing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foldervision.images import SkippedFile, list_image_files
from foldervision.retrieval.embedder import DEFAULT_BATCH_SIZE, Embedder, EmbedderSpec

INDEX_FOLDER_NAME = ".foldervision"
INDEX_FILE_NAME = "index.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL
);
"""


def default_index_path(database_folder: str | os.PathLike[str]) -> Path:
    """`<database>/.foldervision/index.sqlite`: the index travels with the folder it describes."""
    return Path(database_folder) / INDEX_FOLDER_NAME / INDEX_FILE_NAME


@dataclass(frozen=True)
class FileState:
    """What tells us a file changed without reading it: its size and modification time."""

    size: int
    mtime_ns: int


@dataclass
class IndexUpdate:
    """What one update did; `embedded` lists exactly the files whose vectors were computed."""

    embedded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def changed_anything(self) -> bool:
        return bool(self.embedded or self.removed or self.skipped)


@dataclass
class IndexedVectors:
    """All vectors of an index, row i belonging to `paths[i]` (absolute or database-relative)."""

    paths: list[Path]
    vectors: np.ndarray


ProgressCallback = Callable[[int, int], None]
"""Called with (files done, files to embed) after each batch."""


class ImageIndex:
    """The index of one database folder, bound to the embedder spec its vectors came from."""

    def __init__(self, index_path: Path, database_folder: Path, connection: sqlite3.Connection):
        self.index_path = index_path
        self.database_folder = database_folder
        self._connection = connection

    @classmethod
    def open(
        cls,
        database_folder: str | os.PathLike[str],
        spec: EmbedderSpec,
        index_path: str | os.PathLike[str] | None = None,
        rebuild: bool = False,
    ) -> ImageIndex:
        """Open (or create) the index; refuse one built with another embedder unless rebuilding."""
        database_folder = Path(database_folder)
        if not database_folder.is_dir():
            raise ValueError(
                f"{database_folder}: not a folder. Pass --database with a folder of images."
            )
        index_path = Path(index_path) if index_path else default_index_path(database_folder)
        index = cls(index_path, database_folder, _connect(index_path))
        if rebuild:
            index._clear()
        index._bind_to(spec)
        return index

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Spec.

    def stored_spec(self) -> EmbedderSpec | None:
        row = self._connection.execute("SELECT value FROM settings WHERE key = 'spec'").fetchone()
        return EmbedderSpec.from_dict(json.loads(row[0])) if row else None

    def _bind_to(self, spec: EmbedderSpec) -> None:
        stored = self.stored_spec()
        if stored is None:
            with self._connection:
                self._connection.executemany(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                    [("spec", json.dumps(spec.to_dict())), ("schema", SCHEMA_VERSION)],
                )
        elif stored != spec:
            raise ValueError(
                f"{self.index_path}: built with {stored.describe()}, but this run uses "
                f"{spec.describe()}; vectors from different models don't compare. "
                "Pass --rebuild to start over, or --index PATH for a separate index."
            )

    def _clear(self) -> None:
        """Forget everything in one transaction, so an interrupted rebuild is still consistent."""
        with self._connection:
            for table in ("settings", "images", "skipped"):
                self._connection.execute(f"DELETE FROM {table}")

    # ----------------------------------------------------------------------------------------
    # Updating.

    def update(
        self,
        embedder: Embedder,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: ProgressCallback | None = None,
    ) -> IndexUpdate:
        """Bring the index in line with the folder: embed new or changed files, drop deleted ones.

        Files whose size and mtime match the index are not read at all; undecodable files are
        recorded in `skipped` and retried only once they change.
        """
        if embedder.spec != self.stored_spec():
            raise ValueError(f"{self.index_path}: embedder differs from the index's; reopen it.")
        current = self.scan_folder()
        known = self._known_states()
        update = IndexUpdate(removed=sorted(set(known) - set(current)))
        self._remove(update.removed)
        to_embed = [path for path, state in current.items() if known.get(path) != state]
        update.unchanged = len(current) - len(to_embed)
        absolute = [self.database_folder / path for path in to_embed]
        if progress is not None:
            progress(0, len(to_embed))
        for batch in embedder.embed_files(absolute, batch_size):
            self._store_batch(batch.paths, batch.vectors, batch.skipped, current)
            update.embedded.extend(self.relative(path) for path in batch.paths)
            update.skipped.extend(batch.skipped)
            if progress is not None:
                progress(len(update.embedded) + len(update.skipped), len(to_embed))
        return update

    def scan_folder(self) -> dict[str, FileState]:
        """Image files of the database folder (index files excluded) with their size and mtime."""
        states = {}
        for path in list_image_files(self.database_folder):
            relative = self.relative(path)
            if INDEX_FOLDER_NAME in Path(relative).parts:
                continue
            stat = path.stat()
            states[relative] = FileState(stat.st_size, stat.st_mtime_ns)
        return states

    def relative(self, path: str | os.PathLike[str]) -> str:
        return Path(path).relative_to(self.database_folder).as_posix()

    def _known_states(self) -> dict[str, FileState]:
        rows = self._connection.execute(
            "SELECT path, size, mtime_ns FROM images UNION ALL "
            "SELECT path, size, mtime_ns FROM skipped"
        )
        return {path: FileState(size, mtime_ns) for path, size, mtime_ns in rows}

    def _remove(self, relative_paths: Iterable[str]) -> None:
        rows = [(path,) for path in relative_paths]
        with self._connection:
            self._connection.executemany("DELETE FROM images WHERE path = ?", rows)
            self._connection.executemany("DELETE FROM skipped WHERE path = ?", rows)

    def _store_batch(
        self,
        paths: list[Path],
        vectors: np.ndarray,
        skipped: list[SkippedFile],
        states: dict[str, FileState],
    ) -> None:
        """One transaction per batch: a crash keeps whole batches or nothing of a batch."""
        image_rows = []
        for path, vector in zip(paths, vectors):
            state = states[self.relative(path)]
            image_rows.append((self.relative(path), state.size, state.mtime_ns, _to_blob(vector)))
        skipped_rows = []
        for skip in skipped:
            state = states[self.relative(skip.path)]
            skipped_rows.append((self.relative(skip.path), state.size, state.mtime_ns, skip.reason))
        with self._connection:
            self._connection.executemany("DELETE FROM skipped WHERE path = ?",
                                         [row[:1] for row in image_rows])  # fmt: skip
            self._connection.executemany("DELETE FROM images WHERE path = ?",
                                         [row[:1] for row in skipped_rows])  # fmt: skip
            self._connection.executemany(
                "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?)", image_rows
            )
            self._connection.executemany(
                "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)", skipped_rows
            )

    # ----------------------------------------------------------------------------------------
    # Reading.

    def vectors(self) -> IndexedVectors:
        """Every stored vector, in path order, with the file's path under the database folder."""
        rows = self._connection.execute("SELECT path, vector FROM images ORDER BY path").fetchall()
        paths = [self.database_folder / path for path, _ in rows]
        if not rows:
            return IndexedVectors(paths, np.zeros((0, 0), dtype=np.float32))
        vectors = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in rows])
        return IndexedVectors(paths, vectors.astype(np.float32))

    def skipped_files(self) -> list[SkippedFile]:
        rows = self._connection.execute("SELECT path, reason FROM skipped ORDER BY path")
        return [SkippedFile(str(self.database_folder / path), reason) for path, reason in rows]

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def _connect(index_path: Path) -> sqlite3.Connection:
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(index_path)
        connection.executescript(_SCHEMA)
    except (OSError, sqlite3.Error) as error:
        raise ValueError(
            f"{index_path}: cannot open or create the index ({error}); pass --index with a "
            "writable path, or delete the file if it is damaged (it is rebuilt on the next run)."
        ) from error
    return connection


def _to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()
