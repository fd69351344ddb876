"""`duplicates --move-to` and `undo` as a user types them: dry run, move, protect, put back."""

from __future__ import annotations

import hashlib
from pathlib import Path

from test_retrieval_duplicates import SIZE_OPTION, planted_folder  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.retrieval.embedder import Embedder

MOVED = ["chelsea crop.png", "coffee bright.jpg", "copies/astronaut captioned.jpg",
         "copies/astronaut small.jpg", "copies/chelsea.webp"]  # fmt: skip
"""Every planted copy but each group's keeper (astronaut.jpg, chelsea.jpg, coffee.jpg)."""


def hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def duplicates(folder: Path, index: Path, *options: str):
    arguments = ["duplicates", str(folder), "--index", str(index), *options, *SIZE_OPTION]
    return CliRunner().invoke(app, arguments)


def test_dry_run_prints_the_moves_and_touches_nothing(
    planted_folder: tuple[Path, list[list[str]]],  # noqa: F811
    cli_uses_session_embedder: Embedder,
    tmp_path: Path,
) -> None:
    folder, _ = planted_folder
    destination = tmp_path / "duplicates"
    index = tmp_path / "index.sqlite"
    before = hashes(folder)

    result = duplicates(folder, index, "--move-to", str(destination), "--dry-run")

    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert sorted(rows) == [[str(folder / p), str(destination / p)] for p in MOVED]
    assert "would move 5 files" in result.stderr and "nothing was touched" in result.stderr
    assert hashes(folder) == before and not destination.exists()


def test_move_keeps_protected_folders_and_undo_puts_back_every_byte(
    planted_folder: tuple[Path, list[list[str]]],  # noqa: F811
    cli_uses_session_embedder: Embedder,
    tmp_path: Path,
) -> None:
    folder, _ = planted_folder
    destination = tmp_path / "duplicates"
    index = tmp_path / "index.sqlite"
    before = hashes(folder)

    result = duplicates(folder, index, "--move-to", str(destination), "--keep-under",
                        str(folder / "copies"))  # fmt: skip

    assert result.exit_code == 0, result.stderr
    # A protected copy is the keeper of its group: chelsea.webp there, so chelsea.jpg moves;
    # of the two protected astronauts the captioned one (more photo pixels), so the original
    # moves.
    moved = ["astronaut.jpg", "chelsea crop.png", "chelsea.jpg", "coffee bright.jpg"]
    [journal] = destination.glob("foldervision-moves-*.jsonl")
    assert f"moved {len(moved)} files" in result.stderr and str(journal) in result.stderr
    assert {p: d for p, d in hashes(destination).items() if p != journal.name} == {
        path: before[path] for path in moved
    }
    assert set(hashes(folder)) == set(before) - set(moved)
    again = duplicates(folder, index, "--json")  # the index followed: the copies are gone
    assert again.exit_code == 0 and again.stdout.count("\n") == 1  # the protected astronauts

    undone = CliRunner().invoke(app, ["undo", str(journal)])

    assert undone.exit_code == 0, undone.stderr
    assert "4 files put back" in undone.stderr
    assert hashes(folder) == before


def test_undo_refuses_in_one_line_to_overwrite_a_new_file(
    planted_folder: tuple[Path, list[list[str]]],  # noqa: F811
    cli_uses_session_embedder: Embedder,
    tmp_path: Path,
) -> None:
    folder, _ = planted_folder
    destination = tmp_path / "duplicates"
    moved = duplicates(folder, tmp_path / "index.sqlite", "--move-to", str(destination))
    assert moved.exit_code == 0, moved.stderr
    [journal] = destination.glob("foldervision-moves-*.jsonl")
    (folder / "coffee bright.jpg").write_bytes(b"a new picture with the old name")

    undone = CliRunner().invoke(app, ["undo", str(journal)])

    assert undone.exit_code == 2
    assert undone.stderr.splitlines() == [
        f"error: {folder / 'coffee bright.jpg'}: a different file is there now; move it away, "
        "then undo again (nothing was moved back)."
    ]
    assert not (folder / "copies" / "astronaut small.jpg").exists()  # nothing was moved back
