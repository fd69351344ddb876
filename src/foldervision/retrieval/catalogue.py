"""The record of a database folder's files: one SQLite file, the source of truth for an index.

Table `files` gives every indexed image a stable integer id (kept while the file keeps its
path, never reused after it is gone), with its path relative to the database folder, size and
mtime; `photos` (`retrieval.photos`) each file's capture time, camera, place and displayed
size; `skipped` keeps the files that could not be decoded and why; `settings` keeps the
embedder spec the vectors came from. Vectors themselves live in a vector store
(`retrieval.stores`), keyed by these ids; the default store keeps them in this same file.

`id_summaries` keeps, per tracked table of ids (`files`; the default store's `vectors`), the
count, sum and two hashed sums of its ids, maintained by SQLite triggers in the same
transaction as every insert or delete, whoever writes (the catalogue's own bulk inserts add
their ids' sums in one statement instead, `inserting_in_bulk`). Opening an index at 10^6 files
then compares a few numbers instead of reading 10^6 ids (`IdSummary`).

A store that keeps data in this file gets a `StoreSpace` (`store_space(name)`): its own tables
and settings under its name. Only the catalogue touches its own tables and connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.errors import FoldervisionError, IndexMismatchError, IndexUnavailableError
from foldervision.retrieval.id_summary import SUMMARY_COLUMNS, SUMMARY_TERMS, IdSummary
from foldervision.retrieval.photos import PHOTOS_SCHEMA, PhotoRecords
from foldervision.retrieval.spec import EmbedderSpec

SCHEMA_VERSION = "3"
"""3 added `photos`; a catalogue of 2 gains it when opened (its files are read for metadata on
the next update, not embedded again)."""
PAGE_BYTES = 65536
"""SQLite page size of a new catalogue. A row never shares a page it does not fit in, so a
float16 1280-d vector (2,572 bytes with its cell) took a whole 4 KB page (4.1 KB a vector); 8 KB
pages hold three (2.73 KB a vector, 2.73 GB at 10^6); 64 KB pages hold 25 (2.62 KB, 2.62 GB at
10^6), and 27 rows packed in 15 bits a dimension (`stores.faiss._blobs`: 2.43 KB, 2.43 GB at
10^6: what brings catalogue + vectors + index file under 2.7 GB, issue 21). A random read then
copies 64 KB instead of 8: re-ranking 512 candidates took 18 ms instead of 12 on the loaded 2
shared cores (`stores.tuning.RERANK_COST` counts it). The default store sets it on its float16
migration's VACUUM too; a catalogue made with smaller pages keeps them."""
IN_CHUNK = 500
"""Values per `IN (...)` query: SQLite limits the number of parameters of one statement."""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL
);
"""
    + PHOTOS_SCHEMA
)


@dataclass(frozen=True)
class FileState:
    """What tells us a file changed without reading it: its size and modification time."""

    size: int
    mtime_ns: int


class Catalogue:
    """Files, skipped files and the embedder spec of one index, in one SQLite connection."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection
        self.photos = PhotoRecords(connection)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Catalogue:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, check_same_thread=False)
            connection.execute(f"PRAGMA page_size = {PAGE_BYTES}")  # a new file's; else no-op
            # An INSERT OR REPLACE then fires the delete triggers of the row it replaces.
            connection.execute("PRAGMA recursive_triggers = ON")
            _migrate_version_1(connection)
            connection.executescript(_SCHEMA)
            catalogue = cls(path, connection)
            catalogue.track_ids("files")
            catalogue._record_schema()
        except (OSError, sqlite3.Error) as error:
            raise IndexUnavailableError(
                f"{path}: cannot open or create the index ({error}); if the file is damaged, "
                "delete it (it is rebuilt on the next run)"
            ) from error
        return catalogue

    @classmethod
    def open_read_only(cls, path: str | os.PathLike[str]) -> Catalogue:
        """Open an existing catalogue to read it, changing nothing (no schema upgrade either:
        readers check `photos.available()`). One that is not there raises FoldervisionError."""
        path = Path(path)
        try:
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'files'")
            indexed = found.fetchone() is not None
        except sqlite3.Error as error:
            raise IndexUnavailableError(f"{path}: cannot read the index ({error}).") from error
        if not indexed:
            connection.close()
            raise FoldervisionError(
                f"{path}: an index from an older foldervision; run foldervision index on its "
                "folder once to upgrade it."
            )
        return cls(path, connection)

    def close(self) -> None:
        self._connection.close()

    # ----------------------------------------------------------------------------------------
    # Id summaries: cheap "are these two id sets the same?" checks.

    def track_ids(self, table: str) -> None:
        """Keep `table`'s id summary up to date from now on (counted once if new here)."""
        exists = (
            self._connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'id_summaries'"
            ).fetchone()
            and self._connection.execute(
                "SELECT 1 FROM id_summaries WHERE name = ?", (table,)
            ).fetchone()
        )
        if exists:
            return
        with self.transaction():
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS id_summaries (name TEXT PRIMARY KEY, "
                + ", ".join(f"{column} INTEGER NOT NULL" for column in SUMMARY_COLUMNS)
                + ")"
            )
            for event in _SUMMARY_CHANGES:
                self._connection.execute(_summary_trigger(table, event))
            self._count_ids(table)

    def _count_ids(self, table: str) -> None:
        sums = ", ".join(f"COALESCE(SUM({term.format(id='id')}), 0)" for term in SUMMARY_TERMS)
        self._connection.execute(
            f"INSERT OR REPLACE INTO id_summaries SELECT ?, {sums} FROM {table}", (table,)
        )

    def id_summary(self, table: str = "files") -> IdSummary | None:
        """The summary of `table`'s ids (None if it is not tracked)."""
        row = self._connection.execute(
            f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM id_summaries WHERE name = ?", (table,)
        ).fetchone()
        return IdSummary(*row) if row else None

    def recount_ids(self) -> None:
        """Count every tracked table's ids again (a writer that bypassed the triggers)."""
        with self.transaction():
            for (table,) in self._connection.execute("SELECT name FROM id_summaries").fetchall():
                self._count_ids(table)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all (a crash keeps whole batches)."""
        with self._connection:
            yield

    def store_space(self, name: str) -> StoreSpace:
        """The room of the store `name` in this file: its own tables, its own settings."""
        return StoreSpace(self._connection, name)

    # ----------------------------------------------------------------------------------------
    # The embedder the vectors came from.

    def stored_spec(self) -> EmbedderSpec | None:
        value = self.setting("spec")
        return EmbedderSpec.from_dict(json.loads(value)) if value else None

    def bind_to(self, spec: EmbedderSpec) -> None:
        """Record the spec of a new index; refuse an index made by another embedder."""
        stored = self.stored_spec()
        if stored is None:
            with self.transaction():
                self.set_setting("spec", json.dumps(spec.to_dict()))
                self.set_setting("schema", SCHEMA_VERSION)
        elif stored != spec:
            raise IndexMismatchError(
                f"{self.path}: built with {stored.describe()}, but this run uses "
                f"{spec.describe()}; vectors from different models don't compare"
            )

    def setting(self, key: str) -> str | None:
        row = self._connection.execute("SELECT value FROM settings WHERE key = ?", (key,))
        found = row.fetchone()
        return found[0] if found else None

    def set_setting(self, key: str, value: str) -> None:
        self._connection.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value)
        )

    def instance_id(self) -> str:
        """A random id given to this catalogue once: tells its files from a copied index's."""
        value = self.setting("instance")
        if value is None:
            value = uuid.uuid4().hex
            if self._connection.in_transaction:  # commit with the caller's transaction
                self.set_setting("instance", value)
            else:
                with self.transaction():
                    self.set_setting("instance", value)
        return value

    def mark_updated(self) -> None:
        with self.transaction():
            self.set_setting("updated_at", str(time.time()))

    def count_changes(self, files: int) -> None:
        """Add `files` embedded, re-embedded or dropped to the running count (in the caller's
        transaction): what tells a search how far the collection moved since it last looked."""
        if files:
            self.set_setting("changes", str(self.changes() + files))

    def changes(self) -> int:
        """Files embedded, re-embedded or dropped since the index was made."""
        return int(self.setting("changes") or 0)

    def updated_at(self) -> float | None:
        value = self.setting("updated_at")
        return float(value) if value else None

    def _record_schema(self) -> None:
        if self.setting("schema") not in (None, SCHEMA_VERSION):
            with self.transaction():
                self.set_setting("schema", SCHEMA_VERSION)

    def clear(self) -> None:
        """Forget everything in one transaction, so an interrupted rebuild is still consistent."""
        with self.transaction():
            for table in ("settings", "photos", "files", "skipped"):
                self._connection.execute(f"DELETE FROM {table}")

    # ----------------------------------------------------------------------------------------
    # Files.

    def known_states(self, under: Iterable[str] | None = None) -> dict[str, FileState]:
        """Every file the index has seen (embedded or skipped), by relative path; with `under`,
        only those paths and the files below them (a path may name a folder)."""
        if under is None:
            rows = self._connection.execute(_KNOWN).fetchall()
        else:
            rows = [
                row
                for path in set(under)
                for row in self._connection.execute(_KNOWN_UNDER, _path_and_range(path) * 2)
            ]
        return {path: FileState(size, mtime_ns) for path, size, mtime_ns in rows}

    def move_paths(self, moves: Iterable[tuple[str, str]]) -> np.ndarray:
        """Give files, or every file below a folder, the paths they were moved to, in order:
        each keeps its id and vector. Return the ids of the files the moves replaced (to drop
        from the store). Call inside `transaction()`."""
        dropped: list[int] = []
        for source, target in moves:
            parameters = (target, len(source) + 1, *_path_and_range(source))
            for table in _TABLES:
                replaced = f"path IN (SELECT {_MOVED_PATH} FROM {table} WHERE {_AT_OR_BELOW})"
                if table == "files":
                    found = self._connection.execute(
                        f"SELECT id FROM files WHERE {replaced}", parameters
                    )
                    dropped.extend(row[0] for row in found)
                self._connection.execute(f"DELETE FROM {table} WHERE {replaced}", parameters)
                self._connection.execute(
                    f"UPDATE {table} SET path = {_MOVED_PATH} WHERE {_AT_OR_BELOW}", parameters
                )
        return np.asarray(dropped, dtype=np.int64)

    def record_files(self, rows: list[tuple[str, FileState]]) -> np.ndarray:
        """Add or update embedded files; return their ids (an existing path keeps its id).

        Call inside `transaction()`.
        """
        paths = [path for path, _ in rows]
        self._connection.executemany("DELETE FROM skipped WHERE path = ?", [(p,) for p in paths])
        with inserting_in_bulk(self._connection, "files") as added:
            (newest,) = self._connection.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'files'), 0), "
                "COALESCE((SELECT MAX(id) FROM files), 0))"
            ).fetchone()
            self._connection.executemany(
                "INSERT INTO files (path, size, mtime_ns) VALUES (?, ?, ?) ON CONFLICT(path) DO "
                "UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns",
                [(path, state.size, state.mtime_ns) for path, state in rows],
            )
            ids = self.ids_of(paths)
            added(ids[ids > newest])  # new rows get ids above any used (AUTOINCREMENT)
        return ids

    def record_skipped(self, rows: list[tuple[str, FileState, str]]) -> np.ndarray:
        """Mark files as undecodable; return the ids they had as embedded files (to drop)."""
        paths = [path for path, _, _ in rows]
        dropped = self.ids_of(paths, missing_ok=True)
        self._connection.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
        self._connection.executemany(
            "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)",
            [(path, state.size, state.mtime_ns, reason) for path, state, reason in rows],
        )
        return dropped

    def remove_paths(self, paths: Iterable[str]) -> np.ndarray:
        """Forget files that are gone; return the ids they had. Call inside `transaction()`."""
        paths = list(paths)
        dropped = self.ids_of(paths, missing_ok=True)
        self._connection.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
        self._connection.executemany("DELETE FROM skipped WHERE path = ?", [(p,) for p in paths])
        return dropped

    def remove_ids(self, ids: Iterable[int]) -> None:
        self._connection.executemany("DELETE FROM files WHERE id = ?", [(int(i),) for i in ids])

    def ids_of(self, paths: list[str], missing_ok: bool = False) -> np.ndarray:
        query = "SELECT path, id FROM files WHERE path IN ({marks})"
        found: dict[str, int] = dict(select_in(self._connection, query, paths))
        if missing_ok:
            return np.asarray([found[p] for p in paths if p in found], dtype=np.int64)
        return np.asarray([found[p] for p in paths], dtype=np.int64)

    def ids(self) -> np.ndarray:
        rows = self._connection.execute("SELECT id FROM files ORDER BY id").fetchall()
        return np.asarray([row[0] for row in rows], dtype=np.int64)

    def paths_of(self, ids: Iterable[int]) -> dict[int, str]:
        """Relative paths by id (ids the catalogue does not know are left out)."""
        query = "SELECT id, path FROM files WHERE id IN ({marks})"
        return dict(select_in(self._connection, query, [int(i) for i in ids]))

    def files(self) -> list[tuple[int, str]]:
        """(id, relative path) of every embedded file, in path order."""
        return self._connection.execute("SELECT id, path FROM files ORDER BY path").fetchall()

    def skipped(self) -> list[tuple[str, str]]:
        return self._connection.execute("SELECT path, reason FROM skipped ORDER BY path").fetchall()

    def __len__(self) -> int:
        summary = self.id_summary("files")
        if summary is not None:
            return summary.count
        return self._connection.execute("SELECT COUNT(*) FROM files").fetchone()[0]


_TABLES = ("files", "skipped")
_AT_OR_BELOW = "(path = ? OR (path >= ? AND path < ?))"
"""A path, and the paths below it as a folder: from "a/b/" up to, not including, "a/b0"."""
_MOVED_PATH = "? || substr(path, ?)"
"""A moved path: the target, then what followed the source (nothing, or "/rest")."""
_KNOWN, _KNOWN_UNDER = (
    " UNION ALL ".join(f"SELECT path, size, mtime_ns FROM {table}{where}" for table in _TABLES)
    for where in ("", f" WHERE {_AT_OR_BELOW}")
)


def _path_and_range(path: str) -> tuple[str, str, str]:
    """The parameters of `_AT_OR_BELOW` for `path` ('0' is the character after '/')."""
    return path, f"{path}/", f"{path}0"


def _migrate_version_1(connection: sqlite3.Connection) -> None:
    """Indexes of schema 1 kept files and vectors in `images`, keyed by path: give each file an id.

    `images` itself stays until the default store takes its vectors (`stores.faiss`).
    """
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if "images" not in tables or "files" in tables:
        return
    connection.executescript(_SCHEMA)
    with connection:
        connection.execute(
            "INSERT INTO files (path, size, mtime_ns) SELECT path, size, mtime_ns FROM images "
            "ORDER BY path"
        )
        connection.execute(
            "INSERT OR REPLACE INTO settings VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )


_SUMMARY_CHANGES = {
    "INSERT": (("+", "new"),),
    "DELETE": (("-", "old"),),
    "UPDATE OF id": (("-", "old"), ("+", "new")),
}
"""How each kind of change moves a summary: the new row's terms added, the old one's taken."""


def _summary_trigger(table: str, event: str) -> str:
    """The trigger that keeps `table`'s id summary through one kind of change (`event`, a key
    of `_SUMMARY_CHANGES`), named `<table>_ids_<insert|delete|update>`."""
    changes = ", ".join(
        f"{column} = {column}"
        + "".join(f" {sign} {term.format(id=f'{row}.id')}" for sign, row in _SUMMARY_CHANGES[event])
        for column, term in zip(SUMMARY_COLUMNS, SUMMARY_TERMS)
    )
    name = f"{table}_ids_{event.split()[0].lower()}"
    return (
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} "
        f"BEGIN UPDATE id_summaries SET {changes} WHERE name = '{table}'; END"
    )


AddedIds = Callable[[np.ndarray], None]
"""Told the ids a bulk insert added (`inserting_in_bulk`)."""


@contextlib.contextmanager
def inserting_in_bulk(connection: sqlite3.Connection, table: str) -> Iterator[AddedIds]:
    """Insert many rows into a tracked `table` without its per-row insert trigger; the caller
    passes the ids it added to the function yielded, and the id summary takes them in one
    UPDATE.

    Why: the trigger costs about 14 us a row (SQLite 3.40 on the reference machine), a third
    of writing a 1280-d vector row and half of recording a file: about 26 s of writing 10^6
    (issue 21). The trigger is dropped and made again inside the caller's transaction, so an
    error or a crash leaves both it and the summary as they were (tested). A table that is not
    tracked is inserted into as it is.
    """
    tracked = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (f"{table}_ids_insert",)
    ).fetchone()
    if not tracked:
        yield lambda ids: None
        return
    if not connection.in_transaction:
        connection.execute("BEGIN")  # DDL does not open one by itself; the caller's `with` ends it
    added: list[np.ndarray] = []
    connection.execute(f"DROP TRIGGER {table}_ids_insert")
    try:
        yield lambda ids: added.append(np.asarray(ids, np.int64))
    finally:
        connection.execute(_summary_trigger(table, "INSERT"))
    delta = IdSummary.of(np.concatenate(added) if added else [])
    if delta.count:
        changes = ", ".join(f"{column} = {column} + ?" for column in SUMMARY_COLUMNS)
        connection.execute(f"UPDATE id_summaries SET {changes} WHERE name = ?", (*delta, table))


def select_in(
    connection: sqlite3.Connection, query: str, values: Sequence[object]
) -> list[tuple[Any, ...]]:
    """Rows of `query` (its `IN ({marks})` filled in) for every value, however many there are."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start : start + IN_CHUNK])
        marks = ",".join("?" * len(chunk))
        rows.extend(connection.execute(query.format(marks=marks), chunk).fetchall())
    return rows


class StoreSpace:
    """A store's own room in the catalogue file: the tables it makes, its settings by name.

    Settings are kept as "<store>.<key>" in the catalogue's settings (so `--rebuild` clears
    them with everything else); tables are the store's to name and never the catalogue's.
    """

    def __init__(self, connection: sqlite3.Connection, name: str) -> None:
        self._connection = connection
        self.name = name

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, parameters).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._connection.executemany(sql, rows)

    def inserting_in_bulk(self, table: str) -> contextlib.AbstractContextManager[AddedIds]:
        """See `inserting_in_bulk`."""
        return inserting_in_bulk(self._connection, table)

    def select_in(self, query: str, values: Sequence[object]) -> list[tuple[Any, ...]]:
        """See `select_in`: `query` has an `IN ({marks})` for the values."""
        return select_in(self._connection, query, values)

    def has_table(self, table: str) -> bool:
        found = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        )
        return found.fetchone() is not None

    def setting(self, key: str) -> str | None:
        row = self._connection.execute(
            "SELECT value FROM settings WHERE key = ?", (f"{self.name}.{key}",)
        ).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        """Call inside the catalogue's `transaction()`, like every write."""
        self._connection.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
            (f"{self.name}.{key}", value),
        )
