"""Which files the web page may hand out, and their cached thumbnails.

A URL names a root ("db" or "queries") and a path relative to it. Anything that could leave the
root is refused before the file system is asked: `..`, absolute paths, backslashes, empty or
hidden segments (the `.foldervision` index lives in one). The real path is then resolved, so a
symlink that points outside the root is refused too, and only image files are served.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from foldervision.images import ImageLoadError, is_image_file, load_image, save_image_atomic

THUMBNAIL_SIDE = 256
"""Longest side of a thumbnail in pixels: sharp in a grid cell on a high-density screen."""


def resolve_inside(root: Path, relative: str) -> Path | None:
    """The real path of the image `relative` names under `root`, or None if it is not one.

    `root` must already be resolved. None covers every refusal alike (outside the root,
    hidden, not an image, missing), so a caller answers 404 without telling which.
    """
    if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    if not is_image_file(relative):
        return None
    try:
        real = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not real.is_relative_to(root) or not real.is_file() or not is_image_file(real):
        return None
    if any(part.startswith(".") for part in real.relative_to(root).parts):
        return None
    return real


def thumbnail_folder(index_path: Path) -> Path:
    """Thumbnails live beside the index: DATABASE/.foldervision/thumbs by default.

    With `--index PATH` in an ordinary folder they go to a hidden `.foldervision-thumbs` beside
    it, so that a database folder holding the index never sees them as images to index.
    """
    parent = index_path.parent
    return parent / "thumbs" if parent.name.startswith(".") else parent / ".foldervision-thumbs"


def thumbnail(source: Path, cache: Path) -> Path:
    """A JPEG at most THUMBNAIL_SIDE pixels on its longest side, made once and kept in `cache`.

    The cache file carries the original's mtime, and is remade whenever the original's differs
    (edited, replaced, or restored from a backup with an older date). A plain "cache newer than
    the original" test would keep a stale thumbnail when both were written in one clock tick.
    Raises ImageLoadError when the original cannot be decoded; the project's one loader
    decides that, as it does for searches. A large JPEG is decoded at reduced scale (DCT
    scaling, then a box reduce, to no less than twice the thumbnail's side, as "scaled"
    decoding does for embedding): a 12-MP photo's thumbnail reads 1/16 of its pixels.
    """
    original = source.stat()
    if cache.is_file() and cache.stat().st_mtime_ns == original.st_mtime_ns:
        return cache
    pixels = load_image(source, THUMBNAIL_SIDE, decoding="scaled", resize=_fit_thumbnail)
    try:
        save_image_atomic(pixels, cache)
        os.utime(cache, ns=(original.st_atime_ns, original.st_mtime_ns))
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ImageLoadError(f"{cache}: cannot write thumbnail ({reason}).") from error
    return cache


def _fit_thumbnail(image: Image.Image) -> Image.Image:
    """Shrink to fit THUMBNAIL_SIDE, keeping the aspect ratio (never enlarge)."""
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return image
