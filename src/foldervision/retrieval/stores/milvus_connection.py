"""Connecting to Milvus, and who holds a Milvus Lite folder (one process at a time may).

A Lite "server" runs inside this process per folder; `connect` counts the stores that use it
and `release` stops it when the last one closes, so the folder's LOCK is freed. A folder that
another process holds is refused in one line naming that process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foldervision.errors import FoldervisionError, IndexUnavailableError, StoreLockedError


def connect(uri: str, token: str | None) -> Any:
    """A MilvusClient for `uri` (a Lite path ending in .db, or a server), or one clear error."""
    try:
        from pymilvus import MilvusClient
    except ImportError as error:
        raise FoldervisionError(
            "--store milvus needs pymilvus and milvus-lite: pip install 'foldervision[milvus]'"
        ) from error
    if uri.endswith(".db"):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        _refuse_if_locked(Path(uri))
    try:
        with quiet("milvus_lite"):
            client = MilvusClient(uri=uri, token=token or "")
    except Exception as error:
        if uri.endswith(".db"):
            _refuse_if_locked(Path(uri))
        raise IndexUnavailableError(f"{uri}: cannot open the Milvus store ({error})") from error
    if uri.endswith(".db"):
        _LITE_USERS[uri] = _LITE_USERS.get(uri, 0) + 1
    return client


def _refuse_if_locked(data_dir: Path) -> None:
    holders = [pid for pid in lock_holders(data_dir / "LOCK") if pid != os.getpid()]
    if holders:
        pid = holders[0]
        raise StoreLockedError(
            f"{data_dir}: Milvus Lite folder is in use by process {pid} ({_command_of(pid)}); "
            "Milvus Lite allows one process at a time"
        )


def lock_holders(lock_file: Path) -> list[int]:
    """Pids holding a flock/POSIX lock on `lock_file`, from /proc/locks (Linux; else [])."""
    try:
        status = lock_file.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    holders = []
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[5] == device and fields[4].isdigit():
            holders.append(int(fields[4]))
    return holders


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "unknown command"
    command = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    return command[:80] + ("..." if len(command) > 80 else "")


@contextlib.contextmanager
def quiet(*logger_names: str) -> Iterator[None]:
    """Silence library log lines (Lite's start-up traceback, pymilvus' iterator warning): the
    user gets one line from us instead."""
    loggers = [logging.getLogger(name) for name in logger_names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)


def release(uri: str) -> None:
    """Stop the in-process Lite server once no store of this process uses it (frees LOCK)."""
    _LITE_USERS[uri] = _LITE_USERS.get(uri, 1) - 1
    if _LITE_USERS[uri] > 0:
        return
    del _LITE_USERS[uri]
    module = sys.modules.get("milvus_lite.server_manager")
    if module is not None:
        module.server_manager_instance.release_server(uri)


_LITE_USERS: dict[str, int] = {}
