"""Which copy of a photo to keep, and why, from what the files' headers say.

The rules, in order, each one only deciding among the copies the previous ones left tied:
more pixels; less compression (bytes per pixel, compared only within one format: a PNG of a
JPEG is bigger, not better); richer metadata (capture time, camera, GPS); the earliest capture
time; the shortest path (the copy in "Photos/2019" rather than in "Photos/2019/old/copies").
Files under a protected folder (`keep_under`) are always kept, so the keeper is one of them.
Only headers are read (Pillow opens a file lazily), never the pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

COMPRESSION_MARGIN = 1.05
"""A copy is less compressed when it has 5% more bytes per pixel: a few bytes of metadata
must not decide."""
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATE_TIME_ORIGINAL, DATE_TIME_DIGITIZED = 0x9003, 0x9004
MAKE, MODEL = 0x010F, 0x0110


@dataclass(frozen=True)
class FileFacts:
    """What a person compares when choosing between copies."""

    path: str
    width: int = 0
    height: int = 0
    format: str = ""
    size: int = 0
    captured: str | None = None
    """EXIF capture time as written ("2019:05:01 10:22:00"), which sorts in time order."""
    camera: str | None = None
    gps: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def bytes_per_pixel(self) -> float:
        return self.size / self.pixels if self.pixels else 0.0

    @property
    def metadata(self) -> list[str]:
        present = {"capture time": self.captured, "camera": self.camera, "GPS": self.gps}
        return [name for name, value in present.items() if value]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "width": self.width, "height": self.height,
                "format": self.format, "size": self.size, "captured": self.captured,
                "camera": self.camera, "gps": self.gps}  # fmt: skip


def read_facts(folder: str | os.PathLike[str], path: str) -> FileFacts:
    """The facts of `folder / path`; zeros for what cannot be read (a file that vanished)."""
    full = Path(folder) / path
    try:
        size = full.stat().st_size
        with Image.open(full) as image:
            exif = image.getexif()
            details = exif.get_ifd(EXIF_IFD)
            captured = details.get(DATE_TIME_ORIGINAL) or details.get(DATE_TIME_DIGITIZED)
            camera = " ".join(str(exif[tag]).strip("\x00 ") for tag in (MAKE, MODEL)
                              if exif.get(tag)) or None  # fmt: skip
            return FileFacts(
                path=path, width=image.width, height=image.height,
                format=image.format or full.suffix.lstrip(".").upper(), size=size,
                captured=str(captured).strip("\x00 ") or None if captured else None,
                camera=camera, gps=bool(exif.get_ifd(GPS_IFD)),
            )  # fmt: skip
    except (OSError, SyntaxError, ValueError):
        return FileFacts(path=path)


def is_protected(path: str, keep_under: Iterable[str]) -> bool:
    """True when the relative `path` lies under one of the relative folders `keep_under`."""
    parents = PurePosixPath(path).parents
    return any(PurePosixPath(folder) in parents or folder in ("", ".") for folder in keep_under)


def choose_keeper(
    folder: str | os.PathLike[str], files: list[str], keep_under: Iterable[str] = ()
) -> tuple[str, str]:
    """(the file to keep, why) among `files` (relative to `folder`)."""
    facts = [read_facts(folder, path) for path in files]
    return choose_from_facts(facts, keep_under)


def choose_from_facts(facts: list[FileFacts], keep_under: Iterable[str] = ()) -> tuple[str, str]:
    keep_under = list(keep_under)
    protected = [fact for fact in facts if is_protected(fact.path, keep_under)]
    reasons = ["in a protected folder"] if protected and len(protected) < len(facts) else []
    remaining = protected or facts
    for rule in RULES:
        remaining, reason = rule(remaining)
        if reason:
            reasons.append(reason)
    return remaining[0].path, "; ".join(reasons)


def _most_pixels(facts: list[FileFacts]) -> tuple[list[FileFacts], str]:
    best = max(fact.pixels for fact in facts)
    kept = [fact for fact in facts if fact.pixels == best]
    runner_up = max((fact for fact in facts if fact.pixels < best), key=_pixels, default=None)
    if runner_up is None:
        return kept, ""
    return kept, (f"most pixels ({kept[0].width}x{kept[0].height} against "
                  f"{runner_up.width}x{runner_up.height})")  # fmt: skip


def _least_compressed(facts: list[FileFacts]) -> tuple[list[FileFacts], str]:
    kept, reason = [], ""
    for image_format in sorted({fact.format for fact in facts}):
        same = [fact for fact in facts if fact.format == image_format]
        best = max(fact.bytes_per_pixel for fact in same)
        winners = [f for f in same if f.bytes_per_pixel * COMPRESSION_MARGIN >= best]
        losers = [f for f in same if f.bytes_per_pixel * COMPRESSION_MARGIN < best]
        kept.extend(winners)
        if losers and not reason:
            worst = max(losers, key=_bytes_per_pixel)
            reason = (f"least compressed {image_format} ({best:.2f} bytes per pixel against "
                      f"{worst.bytes_per_pixel:.2f})")  # fmt: skip
    return sorted(kept, key=facts.index), reason


def _richest_metadata(facts: list[FileFacts]) -> tuple[list[FileFacts], str]:
    most = max(len(fact.metadata) for fact in facts)
    kept = [fact for fact in facts if len(fact.metadata) == most]
    if len(kept) == len(facts):
        return kept, ""
    return kept, f"richest metadata ({', '.join(kept[0].metadata)})"


def _earliest_capture(facts: list[FileFacts]) -> tuple[list[FileFacts], str]:
    times = [fact.captured for fact in facts if fact.captured]
    if not times:
        return facts, ""
    kept = [fact for fact in facts if fact.captured == min(times)]
    return kept, "" if len(kept) == len(facts) else f"earliest capture time ({min(times)})"


def _shortest_path(facts: list[FileFacts]) -> tuple[list[FileFacts], str]:
    ordered = sorted(facts, key=lambda fact: (len(fact.path), fact.path))
    if len(ordered) == 1:
        return ordered, ""
    shorter = len(ordered[0].path) < len(ordered[1].path)
    return ordered[:1], "shortest path" if shorter else "first by name (the copies are alike)"


def _pixels(fact: FileFacts) -> int:
    return fact.pixels


def _bytes_per_pixel(fact: FileFacts) -> float:
    return fact.bytes_per_pixel


RULES: list[Callable[[list[FileFacts]], tuple[list[FileFacts], str]]] = [
    _most_pixels,
    _least_compressed,
    _richest_metadata,
    _earliest_capture,
    _shortest_path,
]
