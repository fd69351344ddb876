"""Where foldervision keeps files it can make again (converted weights, ONNX exports), and hashes.

A cached file is trusted only by name; files whose origin matters are checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from foldervision.atomic import atomic_path
from foldervision.torch_checkpoint import CorruptCheckpointError


def cache_directory() -> Path:
    """$FOLDERVISION_CACHE, else $XDG_CACHE_HOME/foldervision, else ~/.cache/foldervision."""
    if os.environ.get("FOLDERVISION_CACHE"):
        return Path(os.environ["FOLDERVISION_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "foldervision"
    return Path.home() / ".cache" / "foldervision"


def cached_onnx_path(folder: str, key: str, format_version: int) -> Path:
    """`<cache>/<folder>/<key>-v<format_version>.onnx`. The version is bumped when an export
    recipe changes, so that files made by the old recipe are never reused."""
    return cache_directory() / folder / f"{key}-v{format_version}.onnx"


def cached_onnx_export(
    folder: str, key: str, format_version: int, export: Callable[[Path], None]
) -> Path:
    """The cached ONNX file for `key`, made by `export(path)` only when it is not there yet.

    One place for classifiers and embedders alike: a later process finds the file by name and
    never imports TensorFlow. `export` writes to a temporary path that replaces the cache entry
    only when it returns, so a crash or a failed export leaves no file behind; its error
    reaches the caller, which decides the fallback.
    """
    path = cached_onnx_path(folder, key, format_version)
    if not path.is_file():
        with atomic_path(path) as temporary:
            export(temporary)
    return path


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large checkpoints don't sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str, remedy: str) -> None:
    """Refuse a file whose content differs from the one we know (corrupt or tampered).

    `remedy` finishes the message: how to get a good copy back (it depends on who made the file).
    """
    actual = sha256_of(path)
    if actual != expected:
        raise CorruptCheckpointError(
            f"{path}: sha256 is {actual[:12]}..., expected {expected[:12]}...; the file is corrupt "
            f"or was modified. {remedy}"
        )
