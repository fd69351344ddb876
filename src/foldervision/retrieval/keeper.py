"""Which copy of a photo to keep, and why, from the files' headers and a look at their pixels.

The rules, in order, each one only deciding among the copies the previous ones left tied:

1. more of the photo's own pixels, then the same photo in fewer pixels. The canvas is not the
   photo: a caption bar, a screenshot's margins, status and navigation bars add pixels and no
   photo, so each file's photo is its canvas less the plain bands along its edges (`photo_box`:
   lines mostly of one colour, as bars and margins are and photos rarely are). An enlarged copy
   adds pixels and no detail: a copy with more photo pixels than a smaller one counts that
   one's pixels when the smaller photo, enlarged to its size, gives it back but for
   rounding and re-compression (`extra_detail` under MAX_EXTRA_DETAIL). Copies within
   PHOTO_MARGIN of the most photo pixels tie; among them the one with the fewest pixels in all
   wins (no bar, no margin, not enlarged);
2. less compression (bytes per pixel, compared only within one format: a PNG of a JPEG is
   bigger, not better);
3. richer metadata (capture time, camera, GPS);
4. the earliest capture time;
5. the shortest path (the copy in "Photos/2019" rather than in "Photos/2019/old/copies").

Files under a protected folder (`keep_under`) are always kept, so the keeper is one of them.
Rule 1 reads each copy's pixels once at a reduced scale (JPEG decodes at 1/2 to 1/8) for its
bands and, only when a larger copy might be an enlargement, both copies whole.
Every constant of rule 1 was chosen on flowers5's calibration half
(benchmarks/keeper_quality.py), which reports on the other half.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

PHOTO_MARGIN = 1.03
"""Photo pixels within 3% are the same photo: a band detected one line wider must not decide."""
PLAIN_SHARE = 0.6
"""A line of a bar or margin: at least this share of its pixels within PLAIN_LEVELS grey levels
of the band's colour (a caption's text or a status bar's clock cover less than the rest)."""
PLAIN_LEVELS = 3
EDGE_SHARE = 0.4
"""The first line of the photo after a band: under this share of it in the band's colour."""
MAX_BAND = 0.4
"""A band along one edge covers at most this share of the side; more is the photo's sky."""
BAND_LOOK_SIDE = 512
"""Longest side (at least) of the reduced decode the bands are found in."""
MAX_EXTRA_DETAIL = 1.03
"""Grey levels (`extra_detail`) up to which a copy counts as an enlargement of the smaller one:
enlarging the smaller one again gives back an enlargement but for rounding and re-compression;
a photo taken at the larger size has fine detail the smaller copy lost. Absolute, so it misses
enlargements of sharp photos saved as JPEG, whose re-compression alone differs by more
(docs/benchmarks.md): there the enlargement is kept, as by pixel count alone."""
ENLARGED_FROM_TRIED = 4
"""Smaller copies (the largest first) a copy is compared with: two enlargements of one photo
are not one another's enlargement, so the next smaller copy alone is not enough."""
ENLARGEMENTS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
"""The ways photo tools and browsers enlarge (a screenshot's zoom is bilinear)."""
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
    photo: tuple[int, int, int, int] | None = None
    """(left, top, right, bottom) of the photo without added bars and margins, in the file's
    pixels as shown (EXIF orientation applied); None when not looked at (the whole canvas)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def photo_size(self) -> tuple[int, int]:
        if self.photo is None:
            return self.width, self.height
        left, top, right, bottom = self.photo
        return right - left, bottom - top

    @property
    def photo_pixels(self) -> int:
        width, height = self.photo_size
        return width * height

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


def photo_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of `grey` less the plain bands along its four edges."""
    height, width = grey.shape
    top = _band(grey, height)
    bottom = height - _band(grey[::-1], height)
    left = _band(grey[top:bottom].T, width)
    right = width - _band(grey[top:bottom, ::-1].T, width)
    if bottom - top < 2 or right - left < 2:
        return 0, 0, width, height
    return left, top, right, bottom


def _band(lines: np.ndarray, side: int) -> int:
    """How many of the first `lines` (rows) form a band in the colour of the first one: lines
    mostly of that colour (PLAIN_SHARE of the whole band, a line of text included), at most
    MAX_BAND of the side, ending on a plain line next to one that is not (EDGE_SHARE): a bar's
    straight edge, where a plain background fades into the subject of a photo."""
    longest = int(MAX_BAND * side)
    if len(lines) < 3 or longest < 1:
        return 0
    colour = float(np.median(lines[0]))
    near = np.abs(lines[: longest + 1].astype(np.float32) - colour) <= PLAIN_LEVELS
    share = near.mean(axis=1)
    running = np.cumsum(share) / np.arange(1, len(share) + 1)
    plain = (share >= PLAIN_SHARE) & (running >= PLAIN_SHARE)
    edge = plain[:-1] & (share[1:] < EDGE_SHARE)
    ends = np.flatnonzero(edge & np.cumprod(running[:-1] >= PLAIN_SHARE).astype(bool))
    return int(ends[-1]) + 1 if len(ends) and share[0] >= PLAIN_SHARE else 0


def look_at_photo(folder: str | os.PathLike[str], fact: FileFacts) -> FileFacts:
    """`fact` with its photo box, from a reduced decode; unchanged for an unreadable file."""
    from foldervision.retrieval.verify import read_grey

    if not fact.pixels:
        return fact
    grey = read_grey(Path(folder) / fact.path, BAND_LOOK_SIDE)
    if grey is None or min(grey.shape) < 8:
        return fact
    width, height = fact.width, fact.height
    if (grey.shape[0] > grey.shape[1]) != (height > width) and width != height:
        width, height = height, width  # stored turned, shown upright (EXIF orientation)
    scale_x, scale_y = width / grey.shape[1], height / grey.shape[0]
    left, top, right, bottom = photo_box(grey)
    box = (round(left * scale_x), round(top * scale_y), round(right * scale_x),
           round(bottom * scale_y))  # fmt: skip
    return replace(fact, photo=box)


def extra_detail(big: np.ndarray | None, small: np.ndarray | None) -> float | None:
    """Grey levels (root mean square) of the grey photo `big` that enlarging the smaller photo
    `small` to its size does not give: the best of bilinear, bicubic and Lanczos enlargement,
    and of shifts by up to a pixel (the photo boxes' edges may differ by one). None when the
    photos differ in shape (a crop, not an enlargement), `small` is not smaller, or either is
    missing."""
    if big is None or small is None or min(small.shape) < 8:
        return None
    if abs(np.log((big.shape[1] / big.shape[0]) / (small.shape[1] / small.shape[0]))) > 0.02:
        return None
    if big.shape[0] <= small.shape[0]:
        return None
    height, width = big.shape
    margin_y, margin_x = max(2, height // 25), max(2, width // 25)
    inner = big[margin_y:-margin_y, margin_x:-margin_x].astype(np.float32)
    picture = Image.fromarray(small)
    errors = []
    for resample in ENLARGEMENTS:
        enlarged = np.asarray(picture.resize((width, height), resample), np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = enlarged[margin_y + dy : height - margin_y + dy,
                                   margin_x + dx : width - margin_x + dx]  # fmt: skip
                errors.append(float(np.sqrt(np.mean((inner - shifted) ** 2))))
    return min(errors)


def _photo_pixels(folder: str | os.PathLike[str], fact: FileFacts) -> np.ndarray | None:
    """The grey pixels of `fact`'s photo, decoded whole, without its bands (found again at
    this size: the reduced decode's box, scaled, may be a few pixels off)."""
    from foldervision.retrieval.verify import read_grey

    grey = read_grey(Path(folder) / fact.path, max(fact.width, fact.height))
    if grey is None or grey.size != fact.pixels:
        return None
    left, top, right, bottom = photo_box(grey)
    return grey[top:bottom, left:right]


def is_protected(path: str, keep_under: Iterable[str]) -> bool:
    """True when the relative `path` lies under one of the relative folders `keep_under`."""
    parents = PurePosixPath(path).parents
    return any(PurePosixPath(folder) in parents or folder in ("", ".") for folder in keep_under)


def choose_keeper(
    folder: str | os.PathLike[str], files: list[str], keep_under: Iterable[str] = ()
) -> tuple[str, str]:
    """(the file to keep, why) among `files` (relative to `folder`)."""
    facts = [look_at_photo(folder, read_facts(folder, path)) for path in files]
    photos: dict[str, np.ndarray | None] = {}

    def photo_of(fact: FileFacts) -> np.ndarray | None:
        if fact.path not in photos:
            photos[fact.path] = _photo_pixels(folder, fact)
        return photos[fact.path]

    def enlarged(fact: FileFacts, smaller: FileFacts) -> bool:
        extra = extra_detail(photo_of(fact), photo_of(smaller))
        return extra is not None and extra < MAX_EXTRA_DETAIL

    return choose_from_facts(facts, keep_under, enlarged)


def choose_from_facts(
    facts: list[FileFacts],
    keep_under: Iterable[str] = (),
    enlarged: Callable[[FileFacts, FileFacts], bool] = lambda fact, smaller: False,
) -> tuple[str, str]:
    """The keeper among `facts`; `enlarged(a, b)` says whether copy a only enlarges copy b
    (without pixels to look at: never)."""
    keep_under = list(keep_under)
    protected = [fact for fact in facts if is_protected(fact.path, keep_under)]
    reasons = ["in a protected folder"] if protected and len(protected) < len(facts) else []
    remaining = protected or facts
    rules = [lambda candidates: _most_photo_pixels(candidates, enlarged), *RULES]
    for rule in rules:
        remaining, reason = rule(remaining)
        if reason:
            reasons.append(reason)
    return remaining[0].path, "; ".join(reasons)


def _most_photo_pixels(
    facts: list[FileFacts], enlarged: Callable[[FileFacts, FileFacts], bool]
) -> tuple[list[FileFacts], str]:
    """Rule 1 (see the module's docstring): most photo pixels, enlargements counted at the
    size they were enlarged from; among ties, the fewest pixels in all."""
    counted: dict[str, int] = {}
    source: dict[str, FileFacts] = {}
    ordered = sorted(facts, key=lambda fact: fact.photo_pixels)
    for position, fact in enumerate(ordered):
        smaller = [other for other in ordered[:position]
                   if other.photo_pixels * PHOTO_MARGIN < fact.photo_pixels]  # fmt: skip
        counted[fact.path] = fact.photo_pixels
        for other in smaller[::-1][:ENLARGED_FROM_TRIED]:
            if enlarged(fact, other):
                counted[fact.path] = counted[other.path]
                source[fact.path] = source.get(other.path, other)
                break
    best = max(counted.values())
    tied = [fact for fact in facts if counted[fact.path] * PHOTO_MARGIN >= best]
    fewest = min(fact.pixels for fact in tied)
    kept = [fact for fact in tied if fact.pixels == fewest]
    reasons = []
    behind = [fact for fact in facts if fact not in tied]
    if behind:
        runner_up = max(behind, key=lambda fact: counted[fact.path])
        reasons.append(f"most photo pixels ({_size(kept[0])} against {_size(runner_up)})")
    for fact in tied:
        if fact in kept:
            continue
        if fact.path in source:
            reasons.append(f"{_name(fact)} is only enlarged ({_size(fact)} from "
                           f"{_size(source[fact.path])})")  # fmt: skip
        elif fact.photo_pixels < fact.pixels and len(reasons) < 3:
            reasons.append(f"{_name(fact)} adds bars or margins ({_size(fact)} photo in "
                           f"{fact.width}x{fact.height})")  # fmt: skip
        elif len(reasons) < 3:
            reasons.append(f"same photo in fewer pixels ({kept[0].width}x{kept[0].height} "
                           f"against {fact.width}x{fact.height})")  # fmt: skip
    return kept, "; ".join(reasons)


def _size(fact: FileFacts) -> str:
    width, height = fact.photo_size
    return f"{width}x{height}"


def _name(fact: FileFacts) -> str:
    return PurePosixPath(fact.path).name


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


def _bytes_per_pixel(fact: FileFacts) -> float:
    return fact.bytes_per_pixel


RULES: list[Callable[[list[FileFacts]], tuple[list[FileFacts], str]]] = [
    _least_compressed,
    _richest_metadata,
    _earliest_capture,
    _shortest_path,
]
