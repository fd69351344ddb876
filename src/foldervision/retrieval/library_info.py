"""What a person wants to know about a library and its index: `summarise_library`.

It reads the catalogue as it is, read-only: no folder scan, no update, no network and no
TensorFlow (the stored spec says which model made the vectors), so `foldervision info` answers
at once even for 10^6 photos and never changes the index it describes.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from foldervision.errors import FoldervisionError
from foldervision.retrieval.catalogue import Catalogue
from foldervision.retrieval.index import check_database_folder, default_index_path
from foldervision.retrieval.photo_metadata import TAKEN_FROM_EXIF, camera_name
from foldervision.retrieval.stores import ann
from foldervision.retrieval.stores.milvus import DEFAULT_LITE_FILE_NAME, OWNER_TABLE
from foldervision.web.files import thumbnail_folder

TOP_CAMERAS = 10
SKIP_EXAMPLES = 3


@dataclass(frozen=True)
class SkipReason:
    """Files skipped for one reason: how many, and the first few (relative paths)."""

    reason: str
    files: int
    examples: list[str]


@dataclass(frozen=True)
class LibrarySummary:
    """A library and its index in numbers; `to_dict()` is `foldervision info --json`."""

    database: str
    index_path: str
    updated_at: float | None
    images: int
    extensions: dict[str, int]
    formats: dict[str, int]
    skipped: list[SkipReason]
    taken_first: str | None
    taken_last: str | None
    taken_from_exif: int
    taken_from_file: int
    taken_by_year: dict[str, int]
    cameras: dict[str, int]
    """Top TOP_CAMERAS cameras by photos, then "other cameras" and "no camera" when any."""
    with_position: int
    without_metadata: int
    """Indexed files whose headers the next `foldervision index` still has to read."""
    model: str | None
    spec: dict[str, Any] | None
    stores: dict[str, dict[str, Any]]
    """By store name: what the catalogue knows of it (vectors, index file) without opening it."""
    disk_bytes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_library(
    database: str | os.PathLike[str], index_path: str | os.PathLike[str] | None = None
) -> LibrarySummary:
    """Summarise the index of `database` (default DATABASE/.foldervision/index.sqlite)."""
    database = check_database_folder(Path(database))
    index_path = Path(index_path) if index_path else default_index_path(database)
    if not index_path.is_file():
        raise FoldervisionError(
            f"{database}: not indexed yet ({index_path} does not exist); run foldervision "
            f"index {database} first."
        )
    catalogue = Catalogue.open_read_only(index_path)
    try:
        return _summary(database, catalogue)
    finally:
        catalogue.close()


def _summary(database: Path, catalogue: Catalogue) -> LibrarySummary:
    files = catalogue.files()
    photos = catalogue.photos if catalogue.photos.available() else None
    sources = dict(photos.counts("taken_source")) if photos else {}
    first, last = photos.taken_range() if photos else (None, None)
    spec = catalogue.stored_spec()
    return LibrarySummary(
        database=str(database),
        index_path=str(catalogue.path),
        updated_at=catalogue.updated_at(),
        images=len(files),
        extensions=dict(Counter(Path(path).suffix.lower() for _, path in files).most_common()),
        formats={str(name): count for name, count in photos.counts("format")} if photos else {},
        skipped=_skip_reasons(catalogue.skipped()),
        taken_first=first,
        taken_last=last,
        taken_from_exif=sources.get(TAKEN_FROM_EXIF, 0),
        taken_from_file=sum(sources.values()) - sources.get(TAKEN_FROM_EXIF, 0),
        taken_by_year=dict(sorted(photos.counts("substr(taken, 1, 4)"))) if photos else {},
        cameras=_cameras(photos.counts("make", "model")) if photos else {},
        with_position=dict(photos.counts("latitude IS NOT NULL")).get(1, 0) if photos else 0,
        without_metadata=len(files) - sum(sources.values()),
        model=spec.describe() if spec else None,
        spec=spec.to_dict() if spec else None,
        stores=_stores(catalogue, spec),
        disk_bytes=_disk(catalogue.path),
    )


def _skip_reasons(skipped: list[tuple[str, str]]) -> list[SkipReason]:
    """Skipped files grouped by why (the reason without the file's own path), most first."""
    groups: dict[str, list[str]] = {}
    for path, reason in skipped:
        groups.setdefault(_without_path(reason, path), []).append(path)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [SkipReason(why, len(paths), paths[:SKIP_EXAMPLES]) for why, paths in ordered]


def _without_path(reason: str, path: str) -> str:
    """ "a/b.jpg: cannot decode image (... file '/x/a/b.jpg')." -> "cannot decode image (...
    file)." : the loader and Pillow both name the file; grouping needs the reason alone."""
    prefix, separator, why = reason.partition(": ")
    if separator and prefix.replace("\\", "/").endswith(path):
        reason = why
    return re.sub(r" ?'[^']*" + re.escape(path) + "'", "", reason)


def _cameras(counts: list[tuple[str | None, str | None, int]]) -> dict[str, int]:
    by_name: Counter[str] = Counter()
    without = 0
    for make, model, files in counts:
        name = camera_name(make, model)
        if name is None:
            without += files
        else:
            by_name[name] += files
    top = dict(by_name.most_common(TOP_CAMERAS))
    others = sum(by_name.values()) - sum(top.values())
    return {
        **top,
        **({"other cameras": others} if others else {}),
        **({"no camera": without} if without else {}),
    }


def _stores(catalogue: Catalogue, spec: Any) -> dict[str, dict[str, Any]]:
    """The stores this catalogue has held vectors in, as far as its own file tells."""
    stores: dict[str, dict[str, Any]] = {}
    if catalogue.store_space("faiss").has_table("vectors"):
        summary = catalogue.id_summary("vectors")
        state = ann.index_file_state(catalogue, spec) if spec else None
        stores["faiss"] = {"vectors": summary.count if summary else None, "index_file": state}
    if catalogue.store_space("milvus").has_table(OWNER_TABLE):
        stores["milvus"] = {"vectors": None, "index_file": None}  # info never connects
    return stores


def _disk(index_path: Path) -> dict[str, int]:
    """Bytes on disk of the index and what lives beside it (absent parts left out)."""
    parts = {
        "index": [index_path, Path(f"{index_path}-wal"), Path(f"{index_path}-journal")],
        "index_file": [index_path.with_suffix(".faiss")],
        "milvus_lite": [index_path.parent / DEFAULT_LITE_FILE_NAME],
        "thumbnails": [thumbnail_folder(index_path.resolve())],
    }
    sizes = {name: sum(_size(path) for path in paths) for name, paths in parts.items()}
    return {name: size for name, size in sizes.items() if size or name == "index"}


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(child.stat().st_size for child in path.rglob("*") if child.is_file())
    return 0


def format_time(timestamp: float | None) -> str:
    """A catalogue time (seconds since the epoch) as people read it, in local time."""
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M %Z")
