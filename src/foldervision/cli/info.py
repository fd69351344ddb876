"""`foldervision info`: a library and its index at a glance, read without changing anything.

The command parses, asks `retrieval.library_info` and prints: a few labelled lines for a
person, or one JSON object with `--json`. It loads no network and never updates the index.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from foldervision.cli.app import app
from foldervision.cli.options import IndexPathOption
from foldervision.retrieval.library_info import LibrarySummary, format_time, summarise_library

LABEL_WIDTH = 10


@app.command("info")
def info_command(
    database: Path = typer.Argument(..., help="Folder of images whose index to describe."),
    index: IndexPathOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Describe a library and its index: images, dates, cameras, model, store, disk used.

    Also the formats, the files skipped and why, the years and places photos were taken. The
    index is read as it is: not updated, no network loaded."""
    summary = summarise_library(database, index)
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
        return
    for label, lines in summary_lines(summary):
        for number, line in enumerate(lines):
            print(f"{label if number == 0 else '':{LABEL_WIDTH}}  {line}".rstrip())


def summary_lines(summary: LibrarySummary) -> list[tuple[str, list[str]]]:
    """(label, lines) pairs in reading order; a label's further lines are indented under it."""
    return [
        ("database", [summary.database]),
        ("index", [f"{summary.index_path}, updated {format_time(summary.updated_at)}"]),
        ("images", [f"{summary.images}{_counts(summary.extensions, ': ')}"]),
        ("formats", [_counts(summary.formats) or "not read yet"]),
        ("skipped", _skipped(summary)),
        ("taken", _taken(summary)),
        ("cameras", [_counts(summary.cameras) or "none recorded"]),
        ("places", [f"{summary.with_position} of {summary.images} with GPS coordinates"]),
        ("model", [summary.model or "none yet"]),
        ("store", _stores(summary)),
        (
            "disk",
            [
                _counts(
                    {
                        name.replace("_", " "): _size(bytes_)
                        for name, bytes_ in summary.disk_bytes.items()
                    }
                )
            ],
        ),
    ]


def _counts(counts: dict[str, object], prefix: str = "") -> str:
    """ "a 3, b 1" (with `prefix` before it when there is anything)."""
    text = ", ".join(f"{name} {count}" for name, count in counts.items())
    return f"{prefix}{text}" if text else ""


def _skipped(summary: LibrarySummary) -> list[str]:
    total = sum(reason.files for reason in summary.skipped)
    lines = [str(total)]
    for reason in summary.skipped:
        more = f" and {reason.files - len(reason.examples)} more" if reason.files > len(
            reason.examples
        ) else ""  # fmt: skip
        lines.append(f"{reason.files}  {reason.reason}  {', '.join(reason.examples)}{more}")
    return lines


def _taken(summary: LibrarySummary) -> list[str]:
    if summary.taken_first is None or summary.taken_last is None:
        return ["no dates read yet"]
    first, last = summary.taken_first[:10], summary.taken_last[:10]
    lines = [
        f"{first} to {last}: {summary.taken_from_exif} from EXIF, {summary.taken_from_file} "
        "from file times"
    ]
    lines += [f"{year}  {count}" for year, count in summary.taken_by_year.items()]
    if summary.without_metadata:
        lines.append(f"{summary.without_metadata} not read yet (run foldervision index)")
    return lines


def _stores(summary: LibrarySummary) -> list[str]:
    lines = []
    for name, state in summary.stores.items():
        vectors = "vectors not counted (info does not connect)"
        if state["vectors"] is not None:
            vectors = f"{state['vectors']} vectors"
        index_file = state["index_file"]
        if index_file is not None:
            freshness = "up to date" if index_file["current"] else "out of date (rebuilt on search)"
            vectors += f"; index file {index_file['summary']}, {freshness}"
        lines.append(f"{name}: {vectors}")
    return lines or ["no vectors yet"]


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
