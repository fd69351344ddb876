"""Move files out of the way with a journal, so that every move can be finished or undone.

Nothing is ever deleted or overwritten. Before a file moves, a journal line records where it
is, where it goes, its size and its SHA-256, and the journal is flushed to disk (fsync). On
one file system the move is a single rename that refuses to replace an existing file
(renameat2 RENAME_NOREPLACE), so a `kill -9` at any moment leaves the file in exactly one of
its two places. Across file systems no such rename exists: the file is copied beside its
target under a temporary name, flushed, its hash checked, renamed into place (again never
over an existing file), and only then removed from where it was; a kill between the last two
steps leaves two identical, hash-checked copies, never none, and `finish_moves` or
`undo_moves` resolves them from the journal.

`undo_moves` puts every file back, bit-identical (each file's hash is checked against the
journal before it moves back), and refuses, before moving anything, when a different file has
appeared at a file's old place or a moved file was changed since.

    moves = plan_moves(Path("photos"), [("a.jpg", "b.jpg")], Path("dups"))
    journal = run_moves(moves, new_journal_path(Path("dups")))
    undo_moves(journal)
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from foldervision.errors import FoldervisionError

JOURNAL_KIND = "foldervision moves"
PARTIAL_SUFFIX = ".foldervision-partial"
"""A copy being made across file systems; never a user's file, removed when found."""
CRASH_VARIABLE = "FOLDERVISION_CRASH_AT"
"""Tests set it to "STAGE:N" to kill this process (SIGKILL) the Nth time STAGE is reached."""
RENAME_NOREPLACE = 1
CHUNK = 1 << 20


class MoveError(FoldervisionError):
    """A move or its undo would overwrite a file, or the files are not as the journal says."""


@dataclass(frozen=True)
class Move:
    source: Path
    target: Path


@dataclass(frozen=True)
class JournalEntry:
    source: Path
    target: Path
    size: int
    sha256: str


def plan_moves(database: Path, groups: Iterable[tuple[str, ...]], destination: Path) -> list[Move]:
    """One move per file of `groups` (paths relative to `database`) into `destination`, at the
    same relative path. Refuses a destination inside the database (the files would be indexed
    and found again) unless it is hidden, and any target that exists already."""
    database, destination = Path(database), Path(destination)
    inside = _relative_to(destination.resolve(), database.resolve())
    if inside is not None and not any(part.startswith(".") for part in inside.parts):
        raise MoveError(
            f"{destination}: inside the folder being cleaned ({database}), where the moved "
            "files would be found again; choose a folder outside it."
        )
    moves = [Move(database / path, destination / path) for group in groups for path in group]
    for move in moves:
        if move.target.exists() or move.target.is_symlink():
            raise MoveError(f"{move.target}: already exists; move it away or choose another "
                            "folder to move to.")  # fmt: skip
    return moves


def new_journal_path(destination: Path) -> Path:
    """DESTINATION/foldervision-moves-YYYYMMDD-HHMMSS.jsonl, a name not taken yet."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for number in range(1000):
        suffix = f"-{number}" if number else ""
        path = Path(destination) / f"foldervision-moves-{stamp}{suffix}.jsonl"
        if not path.exists():
            return path
    raise MoveError(f"{destination}: cannot find a free journal name.")


def run_moves(moves: list[Move], journal: Path) -> Path:
    """Move each file, journaling it first; returns the journal. A missing source is an error
    raised before anything moves (the plan is stale)."""
    for move in moves:
        if not move.source.is_file():
            raise MoveError(f"{move.source}: no longer there; list the duplicates again.")
    journal.parent.mkdir(parents=True, exist_ok=True)
    with _Journal.create(journal) as log:
        for move in moves:
            size, digest = file_digest(move.source)
            log.write({"from": str(move.source), "to": str(move.target), "size": size,
                       "sha256": digest})  # fmt: skip
            _crash_point("journaled")
            move_file(move.source, move.target, digest)
            _crash_point("moved")
        log.write({"finished": len(moves)})
    return journal


def read_journal(journal: Path) -> list[JournalEntry]:
    """The journal's moves; a last line cut short by a crash is ignored (its move never
    started: each line is on disk before its file moves)."""
    try:
        lines = Path(journal).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MoveError(f"{journal}: no such journal.") from None
    entries = []
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise MoveError(f"{journal}: line {number + 1} is damaged.") from None
        if number == 0 and record.get("journal") != JOURNAL_KIND:
            raise MoveError(f"{journal}: not a foldervision move journal.")
        if "from" in record:
            entries.append(JournalEntry(Path(record["from"]), Path(record["to"]),
                                        int(record["size"]), str(record["sha256"])))  # fmt: skip
    return entries


def undo_moves(journal: Path) -> int:
    """Put every journaled file back where it was; returns how many moved back. Checks every
    file before moving any: a changed file or a new file in the way stops it, with one line."""
    entries = read_journal(journal)
    actions = [_undo_action(entry) for entry in entries]
    moved = 0
    for entry, action in reversed(list(zip(entries, actions))):
        _remove_partial(entry.source)
        _remove_partial(entry.target)
        if action == "move back":
            move_file(entry.target, entry.source, entry.sha256)
            moved += 1
        elif action == "drop the copy":
            os.remove(entry.target)
            _sync_folder(entry.target.parent)
    with _Journal.append(journal) as log:
        log.write({"undone": moved})
    return moved


def finish_moves(journal: Path) -> int:
    """Complete a run of moves that was interrupted; returns how many files moved now."""
    moved = 0
    for entry in read_journal(journal):
        _remove_partial(entry.target)
        source_digest = _digest_or_none(entry.source)
        target_digest = _digest_or_none(entry.target)
        if target_digest == entry.sha256 and source_digest == entry.sha256:
            os.remove(entry.source)  # an interrupted copy across file systems: it is done
            _sync_folder(entry.source.parent)
        elif target_digest is None and source_digest == entry.sha256:
            move_file(entry.source, entry.target, entry.sha256)
            moved += 1
        elif target_digest != entry.sha256:
            where = "missing" if target_digest is None else "not the file that was moved there"
            raise MoveError(f"{entry.target}: {where} (from {entry.source}); nothing more "
                            "was moved.")  # fmt: skip
    with _Journal.append(journal) as log:
        log.write({"finished": moved})
    return moved


def _undo_action(entry: JournalEntry) -> str:
    """What undoing this entry takes, or MoveError when it would lose or overwrite a file."""
    source_digest = _digest_or_none(entry.source)
    target_digest = _digest_or_none(entry.target)
    if source_digest is not None and source_digest != entry.sha256:
        raise MoveError(f"{entry.source}: a different file is there now; move it away, then "
                        "undo again (nothing was moved back).")  # fmt: skip
    if source_digest == entry.sha256:
        return "drop the copy" if target_digest == entry.sha256 else "nothing"
    if target_digest != entry.sha256:
        where = "is missing" if target_digest is None else "was changed since the move"
        raise MoveError(f"{entry.target}: {where}; cannot put back {entry.source} "
                        "(nothing was moved back).")  # fmt: skip
    return "move back"


# --------------------------------------------------------------------------------------------
# One file.


def move_file(source: Path, target: Path, digest: str) -> None:
    """Move `source` to `target` (never over an existing file): one rename on one file system,
    else a hash-checked copy, then the source's removal."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        rename_no_replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise _as_move_error(error, target) from None
        _copy_then_remove(source, target, digest)
    _sync_folder(target.parent)
    _sync_folder(source.parent)


def rename_no_replace(source: Path, target: Path) -> None:
    """os.rename that fails with FileExistsError instead of replacing `target`."""
    libc = _libc()
    renameat2 = getattr(libc, "renameat2", None) if libc is not None else None
    if renameat2 is not None:
        at_current = -100  # AT_FDCWD
        result = renameat2(at_current, os.fsencode(source), at_current, os.fsencode(target),
                           RENAME_NOREPLACE)  # fmt: skip
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(source), None, str(target))
    if os.path.lexists(target):  # no atomic no-replace rename here: check, then rename
        raise FileExistsError(errno.EEXIST, "File exists", str(target))
    os.rename(source, target)


def _copy_then_remove(source: Path, target: Path, digest: str) -> None:
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    partial.unlink(missing_ok=True)
    with open(source, "rb") as reader, open(partial, "xb") as writer:
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    stat = source.stat()
    os.utime(partial, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if file_digest(partial)[1] != digest:
        partial.unlink()
        raise MoveError(f"{target}: the copy does not match {source}; nothing was moved.")
    rename_no_replace(partial, target)
    _sync_folder(target.parent)
    _crash_point("copied")
    if file_digest(source)[1] != digest:  # changed while copying: keep both, say so
        raise MoveError(f"{source}: changed while it was being moved; both copies are kept.")
    os.remove(source)


def file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of the file's bytes."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def _digest_or_none(path: Path) -> str | None:
    return file_digest(path)[1] if path.is_file() else None


def _remove_partial(path: Path) -> None:
    path.with_name(path.name + PARTIAL_SUFFIX).unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Make a rename or removal in `folder` durable (its directory entry on disk)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is done
    finally:
        os.close(descriptor)


def _as_move_error(error: OSError, target: Path) -> Exception:
    if isinstance(error, FileExistsError) or error.errno == errno.EEXIST:
        return MoveError(f"{target}: already exists; it was not overwritten.")
    return error


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _relative_to(path: Path, folder: Path) -> Path | None:
    try:
        return path.relative_to(folder)
    except ValueError:
        return None


_crash_counts: dict[str, int] = {}


def _crash_point(stage: str) -> None:
    """Die here, as `kill -9` would, when a test asked for it (CRASH_VARIABLE)."""
    wanted = os.environ.get(CRASH_VARIABLE)
    if not wanted:
        return
    _crash_counts[stage] = _crash_counts.get(stage, 0) + 1
    if wanted == f"{stage}:{_crash_counts[stage]}":
        os.kill(os.getpid(), signal.SIGKILL)


class _Journal:
    """An append-only JSON-lines file; each line is on disk (fsync) when `write` returns."""

    def __init__(self, handle) -> None:
        self._handle = handle

    @classmethod
    def create(cls, path: Path) -> _Journal:
        journal = cls(open(path, "x", encoding="utf-8"))  # noqa: SIM115 (closed by __exit__)
        journal.write({"journal": JOURNAL_KIND, "version": 1, "created": time.time()})
        _sync_folder(path.parent)
        return journal

    @classmethod
    def append(cls, path: Path) -> _Journal:
        return cls(open(path, "a", encoding="utf-8"))  # noqa: SIM115 (closed by __exit__)

    def write(self, record: dict[str, object]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def __enter__(self) -> _Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()
