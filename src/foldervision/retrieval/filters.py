"""Which photos a search, a duplicate check or a listing looks at: `PhotoFilter`, decided once.

The command line builds one from `--taken-after`, `--taken-before`, `--camera` and `--under`
(`cli.options`), the web API from the same query parameters (`web.routes`), both through
`photo_filter`, which checks every value and says in one line what to pass instead. The
catalogue turns a filter into the ids of the matching files (SQL, `retrieval.photos`); the
store then searches only those, so a filtered search returns the true top k among them.

Dates compare with the wall-clock time a photo was taken where it was taken (EXIF has no
time zone unless the camera wrote its offset): `--taken-after 2023-06-01` keeps photos taken
on or after midnight starting 1 June; `--taken-before 2023-09-01` those taken before midnight
starting 1 September, so the two make a half-open range that never counts a day twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from foldervision.errors import FoldervisionError
from foldervision.retrieval.photo_metadata import TAKEN_FORMAT

DATE_LAYOUTS = ("%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
DATE_EXAMPLE = "2023, 2023-06, 2023-06-01 or 2023-06-01T18:30"


@dataclass(frozen=True)
class PhotoFilter:
    """Photos taken in [taken_after, taken_before), by a camera, below a folder; all optional.

    Every field is None when not asked for; an empty filter matches every indexed file.
    """

    taken_after: str | None = None
    """Inclusive, "YYYY-MM-DDTHH:MM:SS" wall-clock time (`TAKEN_FORMAT`)."""
    taken_before: str | None = None
    """Exclusive, same layout."""
    camera: str | None = None
    """Case-insensitive substring of the camera's make and model ("iphone", "canon eos")."""
    under: str | None = None
    """A folder of the database, relative to it with forward slashes ("2023/summer")."""

    @property
    def is_empty(self) -> bool:
        return not (self.taken_after or self.taken_before or self.camera or self.under)

    def describe(self) -> str:
        """The filter in words, for messages: "taken from 2023-06-01, camera 'iphone'"."""
        parts = []
        if self.taken_after:
            parts.append(f"taken from {_short_date(self.taken_after)}")
        if self.taken_before:
            parts.append(f"taken before {_short_date(self.taken_before)}")
        if self.camera:
            parts.append(f"camera {self.camera!r}")
        if self.under:
            parts.append(f"under {self.under}/")
        return ", ".join(parts) or "every photo"

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_after": self.taken_after,
            "taken_before": self.taken_before,
            "camera": self.camera,
            "under": self.under,
        }


def photo_filter(
    database: str | os.PathLike[str],
    *,
    taken_after: str | None = None,
    taken_before: str | None = None,
    camera: str | None = None,
    under: str | os.PathLike[str] | None = None,
) -> PhotoFilter:
    """The filter these option values describe, every value checked; one line if one is wrong.

    None or an empty text leaves that part out.
    """
    after = parse_date(taken_after, "--taken-after") if taken_after else None
    before = parse_date(taken_before, "--taken-before") if taken_before else None
    if after and before and after >= before:
        raise FoldervisionError(
            f"--taken-after {taken_after} is not before --taken-before {taken_before}: nothing "
            "can match; pass an earlier --taken-after or a later --taken-before."
        )
    camera = " ".join((camera or "").split()) or None
    folder = folder_under(database, under) if under else None
    return PhotoFilter(after, before, camera, folder or None)


def parse_date(text: str, option: str) -> str:
    """ "2023", "2023-06", "2023-06-01" or a time on that day, as the start it names."""
    for layout in DATE_LAYOUTS:
        try:
            return datetime.strptime(text.strip(), layout).strftime(TAKEN_FORMAT)
        except ValueError:
            continue
    raise FoldervisionError(f"{option} {text}: not a date; pass one like {DATE_EXAMPLE}.")


def folder_under(database: str | os.PathLike[str], folder: str | os.PathLike[str]) -> str:
    """`folder` as a path relative to the database ("" for the database itself).

    A relative folder is looked for in the database first ("2023" is DATABASE/2023), then from
    the current directory ("photos/2023" when DATABASE is "photos"); an absolute one must lie
    inside the database. It must exist: a typo would otherwise silently match nothing.
    """
    root = Path(database).resolve()
    text = os.fspath(folder)
    candidates = [Path(text)] if Path(text).is_absolute() else [root / text, Path(text)]
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_dir() and resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix().removeprefix(".")
    inside = any(candidate.resolve().is_relative_to(root) for candidate in candidates)
    reason = "no such folder in it" if inside else "not inside it"
    raise FoldervisionError(
        f"--under {text}: {reason} ({database}); pass a subfolder of the database, relative to "
        "it or as a path."
    )


def _short_date(taken: str) -> str:
    return taken.removesuffix("T00:00:00")
