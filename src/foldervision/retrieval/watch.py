"""Keeping an index current while its folder changes: `FolderWatcher`.

watchdog reports file-system events (inotify on Linux) from its own thread; the watcher only
notes which relative paths they touched, and the moves in the order they happened. Its worker
thread turns those notes into batches for `RetrievalService.update_paths`:

- Batches: it waits until no event came for `settle` seconds (or `max_delay` seconds after the
  first pending one, so a long copy is indexed as it goes), then takes every path that is
  ready. 1,000 files copied at once become a few updates, each embedding many files together.
- Files still being written: a path is ready only when no event touched it for `settle`
  seconds and its size and mtime were the same at two checks `settle` seconds apart. A writer
  that pauses longer than that mid-file gets the partial file indexed (or skipped, if it does
  not decode) and indexed again when its next write changes the file.
- Failures: an update that raises (the disk is full, another process holds the index) leaves
  its paths pending; they are tried again `retry` seconds later. A file that cannot be decoded
  is recorded as skipped, as `foldervision index` does, and tried again when it changes.
- Nothing lost, nothing twice: the index commits each batch of files with its vectors in one
  transaction and a path keeps one row, so a stop or a kill mid-batch keeps whole batches. The
  watcher starts with a full update after the watch is in place, so no change falls between
  the two, and runs one every `rescan` seconds to catch events the kernel dropped (a full
  inotify queue); a restart after a kill does the same.
- Moves and renames keep their vectors (`ImageIndex.update_paths`): renaming a folder of 5,000
  photos costs one SQL statement, not 5,000 embeddings.

Why the touched paths and not a full `update` per batch: a full update stats every file of the
folder (seconds at 10^6 files) to find the few that changed; the events already name them. The
store's search structure is written to disk (`flush`) once the folder has been quiet for
`flush_after` seconds and on `stop`; until then searches use the one in memory.

    with FolderWatcher(service, on_update=print):
        ...  # searches see new photos within seconds
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from foldervision.errors import FoldervisionError
from foldervision.images import is_image_file
from foldervision.retrieval.catalogue import FileState
from foldervision.retrieval.index import IndexUpdate
from foldervision.retrieval.service import RetrievalService

SETTLE_SECONDS = 0.5
MAX_DELAY_SECONDS = 3.0
RETRY_SECONDS = 5.0
RESCAN_SECONDS = 600.0
FLUSH_AFTER_SECONDS = 10.0
FOLDER = "folder"
"""The state of a path that is a folder (a file's is its `FileState`, a gone path's None)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchTimings:
    """How long the watcher waits for what (seconds); see the module docstring."""

    settle: float = SETTLE_SECONDS
    max_delay: float = MAX_DELAY_SECONDS
    retry: float = RETRY_SECONDS
    rescan: float = RESCAN_SECONDS
    flush_after: float = FLUSH_AFTER_SECONDS


class FolderWatcher:
    """Watches a service's database folder and keeps its index current until `stop`."""

    def __init__(
        self,
        service: RetrievalService,
        timings: WatchTimings = WatchTimings(),
        on_update: Callable[[IndexUpdate], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.service = service
        self.timings = timings
        self.on_update = on_update
        self.on_error = on_error
        self.folder = os.path.abspath(service.database)
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        self._touched: dict[str, float] = {}
        """Relative path -> when an event last touched it (monotonic seconds)."""
        self._checked: dict[str, FileState | str | None] = {}
        """Relative path -> its state at the last check, for the two-check rule."""
        self._moves: list[tuple[str, str]] = []
        self._new_folders: set[str] = set()
        self._busy = False
        self._retry_at = 0.0
        self._last_event = 0.0
        self._last_change = 0.0
        self._unflushed = False
        self._last_full_update = 0.0
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------
    # Starting and stopping.

    def start(self) -> FolderWatcher:
        """Watch from now on; the worker first brings the whole index up to date."""
        observer = Observer()
        observer.schedule(_EventNotes(self), self.folder, recursive=True)
        try:
            observer.start()
        except OSError as error:
            raise FoldervisionError(
                f"{self.folder}: cannot watch it ({error.strerror or error}); on Linux, raise "
                "fs.inotify.max_user_watches (sysctl) for a folder with very many subfolders."
            ) from None
        self._observer = observer
        self._busy = True  # until the first full update is done
        self._worker = threading.Thread(target=self._run, name="foldervision-watch", daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop watching; an update in progress stops after its current batch (kept)."""
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        observer = self._observer
        if observer is not None:
            observer.stop()
            observer.join(timeout)
        if self._worker is not None:
            self._worker.join(timeout)
        if self._unflushed:
            self._flush()

    def __enter__(self) -> FolderWatcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_until_idle(self, timeout: float) -> bool:
        """True once nothing is pending or being updated (events the kernel has not delivered
        yet are not known here: callers that just changed files wait for their effect)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._busy or self._touched or self._moves or self._new_folders:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    # ----------------------------------------------------------------------------------------
    # Events (watchdog's thread): note what they touched, nothing more.

    def note(self, kind: str, path: str, is_directory: bool, target: str | None = None) -> None:
        """Record one event: `kind` is watchdog's event type, paths are absolute."""
        if kind in ("opened", "closed_no_write") or (is_directory and kind == "modified"):
            return  # reading a file, or a folder's listing changed: its files say what
        source = self._relative(path)
        destination = self._relative(target) if target is not None else None
        with self._condition:
            now = time.monotonic()
            if kind == "moved" and source and destination:
                self._moves.append((source, destination))
            for relative in (source, destination):
                if relative is not None and (is_directory or is_image_file(relative)):
                    self._touched[relative] = now
            arrived = destination if kind == "moved" else source
            if is_directory and kind in ("created", "moved") and arrived is not None:
                self._new_folders.add(arrived)
            self._last_event = now
            self._condition.notify_all()

    def _relative(self, path: str) -> str | None:
        """The path relative to the folder, or None outside it or hidden (the index's own)."""
        relative = os.path.relpath(path, self.folder).replace(os.sep, "/")
        if relative == "." or relative.startswith("../"):
            return None
        if any(part.startswith(".") for part in relative.split("/")):
            return None
        return relative

    # ----------------------------------------------------------------------------------------
    # The worker: batches, retries, the periodic full update and flush.

    def _run(self) -> None:
        self._full_update()
        while not self._stopping.is_set():
            batch = self._wait_for_batch()
            if batch is not None:
                self._update(*batch)
            elif not self._stopping.is_set():
                self._housekeeping()

    def _wait_for_batch(self) -> tuple[set[str], list[tuple[str, str]]] | None:
        """The next batch of ready paths and the pending moves; None when it is time for
        housekeeping or to stop."""
        timings = self.timings
        with self._condition:
            self._busy = False
            self._condition.notify_all()
            while not self._stopping.is_set():
                now = time.monotonic()
                pending = self._touched or self._moves or self._new_folders
                if not pending:
                    wait = self._housekeeping_due_in(now)
                    if wait <= 0:
                        self._busy = True
                        return None
                elif now < self._retry_at:
                    wait = self._retry_at - now
                elif now - self._last_event >= timings.settle or self._overdue(now):
                    ready = self._take_ready(now)
                    if ready[0] or ready[1]:
                        self._busy = True
                        return ready
                    wait = timings.settle
                else:
                    wait = timings.settle - (now - self._last_event)
                self._condition.wait(max(wait, 0.01))
        return None

    def _overdue(self, now: float) -> bool:
        """Pending longer than `max_delay`: a steady stream of events still gets batches."""
        return bool(self._touched) and now - min(self._touched.values()) >= self.timings.max_delay

    def _take_ready(self, now: float) -> tuple[set[str], list[tuple[str, str]]]:
        """Check every pending path once; take those unchanged since their last check."""
        for folder in self._new_folders:
            self._touch_files_below(folder)
        self._new_folders.clear()
        ready = set()
        for relative, touched_at in list(self._touched.items()):
            state = _state_of(Path(self.folder) / relative)
            quiet = now - touched_at >= self.timings.settle
            if quiet and relative in self._checked and self._checked[relative] == state:
                ready.add(relative)
                del self._touched[relative], self._checked[relative]
            else:
                self._checked[relative] = state
        moves, self._moves = self._moves, []
        return ready, moves

    def _touch_files_below(self, folder: str) -> None:
        """A folder created or moved in: each image file below it is checked as a new file
        (watchdog reports the files it finds, but a copy may add more before it looks)."""
        root = Path(self.folder)
        now = time.monotonic()
        for directory, folders, files in os.walk(root / folder):
            folders[:] = [name for name in folders if not name.startswith(".")]
            for name in files:
                relative = self._relative(os.path.join(directory, name))
                if relative is not None and is_image_file(relative):
                    self._touched.setdefault(relative, now)

    def _update(self, paths: set[str], moves: list[tuple[str, str]]) -> None:
        try:
            update = self.service.update_paths(paths, moves, should_stop=self._stopping.is_set)
        except Exception as error:  # noqa: BLE001 - kept pending and retried; the caller hears
            self._put_back(paths, moves)
            self._report_error(error)
            return
        if update.changed_anything:
            self._changed()
            if self.on_update is not None:
                self.on_update(update)

    def _put_back(self, paths: set[str], moves: list[tuple[str, str]]) -> None:
        with self._condition:
            now = time.monotonic()
            for relative in paths:
                self._touched.setdefault(relative, now - self.timings.settle)
            self._moves[:0] = moves
            self._retry_at = now + self.timings.retry

    def _full_update(self) -> None:
        self._last_full_update = time.monotonic()
        try:
            update = self.service.update(should_stop=self._stopping.is_set)
        except Exception as error:  # noqa: BLE001 - the next rescan tries again
            self._report_error(error)
            # due again `retry` seconds from now, not `rescan`
            self._last_full_update = time.monotonic() - self.timings.rescan + self.timings.retry
            return
        if update.changed_anything and self.on_update is not None:
            self.on_update(update)

    def _housekeeping_due_in(self, now: float) -> float:
        """Seconds until the next flush or full update is due (<= 0: now)."""
        flush_due = (
            self._last_change + self.timings.flush_after - now if self._unflushed else float("inf")
        )
        rescan_due = self._last_full_update + self.timings.rescan - now
        return min(flush_due, rescan_due)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_full_update >= self.timings.rescan:
            self._full_update()  # it writes the store's file too
            self._unflushed = False
        elif self._unflushed:
            self._flush()

    def _changed(self) -> None:
        self._last_change = time.monotonic()
        self._unflushed = True

    def _flush(self) -> None:
        try:
            self.service.flush()
            self._unflushed = False
        except Exception as error:  # noqa: BLE001 - the next search rebuilds it if need be
            self._report_error(error)
            self._last_change = time.monotonic()

    def _report_error(self, error: Exception) -> None:
        if self.on_error is not None:
            self.on_error(error)
        else:
            logger.warning("watching %s: %s", self.folder, error)


def _state_of(path: Path) -> FileState | str | None:
    """A file's size and mtime, FOLDER for a folder, None when gone."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if os.path.isdir(path):
        return FOLDER
    return FileState(stat.st_size, stat.st_mtime_ns)


class _EventNotes(FileSystemEventHandler):
    """watchdog's handler: every event goes to `FolderWatcher.note`."""

    def __init__(self, watcher: FolderWatcher) -> None:
        self.watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        target = os.fsdecode(event.dest_path) if event.dest_path else None
        self.watcher.note(event.event_type, os.fsdecode(event.src_path), event.is_directory, target)
