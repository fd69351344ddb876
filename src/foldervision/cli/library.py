"""Acting on the library: `undo` puts back files a `duplicates --move-to` moved away, and
`finish-moves` completes a run of moves that was interrupted. Both read the move journal."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from foldervision.cli.app import app, console
from foldervision.library.moves import finish_moves, undo_moves
from foldervision.retrieval.duplicates import DuplicateGroup
from foldervision.retrieval.service import RetrievalService

JournalArgument = typer.Argument(
    ..., help="The journal a move wrote (foldervision-moves-*.jsonl in the folder moved to)."
)


@app.command("undo")
def undo_command(journal: Path = JournalArgument) -> None:
    """Put back every file a move journal moved, bit-identical (each file's hash is checked).

    Refuses, before moving anything, if a different file now sits at a file's old place."""
    moved_back = undo_moves(journal)
    console.print(f"{moved_back} files put back; the index catches up the next time it is used "
                  "(foldervision index FOLDER).", markup=False, soft_wrap=True)  # fmt: skip


@app.command("finish-moves")
def finish_moves_command(journal: Path = JournalArgument) -> None:
    """Complete a run of moves that was interrupted (the journal says which files were left)."""
    moved = finish_moves(journal)
    console.print(f"{moved} more files moved; the journal is complete.", markup=False)


def move_duplicates(
    service: RetrievalService,
    groups: list[DuplicateGroup],
    destination: Path,
    keep_under: list[Path],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Print each move (`from<TAB>to`, or JSON) and make it, unless this is a dry run."""
    journal = None
    if dry_run or not groups:
        moves = service.plan_duplicate_moves(groups, destination, keep_under)
    else:
        moves, journal = service.move_duplicates(groups, destination, keep_under)
    for move in moves:
        if as_json:
            print(json.dumps({"from": str(move.source), "to": str(move.target)},
                             ensure_ascii=False))  # fmt: skip
        else:
            print(f"{move.source}\t{move.target}")
    summary = f"{len(groups)} groups of near-duplicates"
    if journal is None:
        verb = "would move" if dry_run else "moved"
        console.print(f"{summary}; {verb} {len(moves)} files to {destination} (nothing was "
                      "touched)", markup=False, soft_wrap=True)  # fmt: skip
        return
    console.print(f"{summary}; moved {len(moves)} files to {destination}; journal: {journal} "
                  f"(to put them back: foldervision undo \"{journal}\")", markup=False,
                  soft_wrap=True)  # fmt: skip
