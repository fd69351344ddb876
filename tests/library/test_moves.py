"""Moving copies out of the way: journaled, never overwriting, undone bit for bit, kill-safe."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from foldervision.library.moves import (
    CRASH_VARIABLE,
    MoveError,
    finish_moves,
    new_journal_path,
    plan_moves,
    read_journal,
    rename_no_replace,
    run_moves,
    undo_moves,
)

TO_MOVE = [("copies/b.jpg", "c.png"), ("deep/er/d.jpg",), ("été/café au lait.jpg",)]


def hashes(folder: Path) -> dict[str, str]:
    """Every file below `folder` (hidden ones too) by relative path, with its SHA-256."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """Real image files in nested folders, odd names included, plus a hidden index file."""
    folder = tmp_path / "album"
    names = ["a.jpg", "c.png", "copies/b.jpg", "deep/er/d.jpg", "été/café au lait.jpg",
             "keep/e.jpg"]  # fmt: skip
    for number, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + number, 30), (number * 40, 100, 200)).save(folder / name)
    (folder / ".foldervision").mkdir()
    (folder / ".foldervision" / "index.sqlite").write_bytes(b"not touched")
    return folder


def other_file_system_folder(album: Path) -> Path | None:
    """A scratch folder on another file system than the album (/dev/shm is tmpfs), or None."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        return None
    if shm.stat().st_dev == album.stat().st_dev:
        return None
    return Path(tempfile.mkdtemp(dir=shm, prefix="foldervision-moves-"))


@pytest.fixture(params=["same file system", "across file systems"])
def destination(request: pytest.FixtureRequest, album: Path, tmp_path: Path):
    if request.param == "same file system":
        yield tmp_path / "moved duplicates"
        return
    scratch = other_file_system_folder(album)
    if scratch is None:
        pytest.skip("no second file system to move across (/dev/shm)")
    yield scratch / "moved duplicates"
    subprocess.run(["rm", "-rf", str(scratch)], check=True)


def test_move_then_undo_leaves_the_folder_byte_identical(album: Path, destination: Path) -> None:
    before = hashes(album)
    sizes = {path: (album / path).stat().st_size for path in before}
    journal = new_journal_path(destination)

    run_moves(plan_moves(album, TO_MOVE, destination), journal)

    moved = [path for group in TO_MOVE for path in group]
    assert hashes(destination) == {**{p: before[p] for p in moved},
                                   journal.name: hashes(destination)[journal.name]}  # fmt: skip
    assert set(hashes(album)) == set(before) - set(moved)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert records[0]["journal"] == "foldervision moves" and records[-1] == {"finished": 4}
    assert [(Path(r["from"]), Path(r["to"]), r["size"], r["sha256"]) for r in records[1:-1]] == [
        (album / path, destination / path, sizes[path], before[path]) for path in moved
    ]

    assert undo_moves(journal) == 4

    assert hashes(album) == before
    assert set(hashes(destination)) == {journal.name}


def test_planning_touches_nothing_and_refuses_what_would_overwrite(
    album: Path, tmp_path: Path
) -> None:
    before = hashes(album)
    moves = plan_moves(album, TO_MOVE, tmp_path / "out")
    assert [move.target for move in moves][0] == tmp_path / "out" / "copies" / "b.jpg"
    assert hashes(album) == before and not (tmp_path / "out").exists()

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c.png").write_bytes(b"someone else's")
    with pytest.raises(MoveError, match=r"out/c.png: already exists"):
        plan_moves(album, TO_MOVE, tmp_path / "out")
    with pytest.raises(MoveError, match="inside the folder being cleaned"):
        plan_moves(album, TO_MOVE, album / "duplicates")
    assert plan_moves(album, TO_MOVE, album / ".duplicates")  # hidden: never indexed


def test_undo_refuses_a_new_file_at_an_old_place_and_moves_nothing_back(
    album: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "out"
    journal = run_moves(plan_moves(album, TO_MOVE, destination), new_journal_path(destination))
    (album / "c.png").write_bytes(b"a new picture, made after the move")
    moved_away = hashes(destination)

    with pytest.raises(MoveError) as raised:
        undo_moves(journal)

    assert str(raised.value) == (
        f"{album / 'c.png'}: a different file is there now; move it away, then undo again "
        "(nothing was moved back)."
    )
    assert hashes(destination) == moved_away
    assert (album / "c.png").read_bytes() == b"a new picture, made after the move"


def test_undo_refuses_a_copy_changed_since_the_move(album: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out"
    journal = run_moves(plan_moves(album, TO_MOVE, destination), new_journal_path(destination))
    (destination / "deep" / "er" / "d.jpg").write_bytes(b"edited afterwards")

    with pytest.raises(MoveError, match=r"d.jpg: was changed since the move"):
        undo_moves(journal)
    assert not (album / "copies" / "b.jpg").exists()  # checked before anything moved


def test_a_rename_never_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == b"a" and (tmp_path / "b").read_bytes() == b"b"


MOVE_SCRIPT = """
import sys
from pathlib import Path
from foldervision.library.moves import plan_moves, run_moves
album, destination, journal = map(Path, sys.argv[1:4])
groups = [("copies/b.jpg", "c.png"), ("deep/er/d.jpg",), ("été/café au lait.jpg",)]
run_moves(plan_moves(album, groups, destination), journal)
"""

CRASHES = [
    ("same file system", "journaled:1"),
    ("same file system", "journaled:4"),
    ("same file system", "moved:2"),
    ("across file systems", "journaled:3"),
    ("across file systems", "copied:2"),
    ("across file systems", "moved:4"),
]


@pytest.mark.parametrize(("where", "crash"), CRASHES)
@pytest.mark.parametrize("then", ["undo", "finish"])
def test_a_kill_9_at_any_stage_can_be_undone_or_finished(
    album: Path, tmp_path: Path, where: str, crash: str, then: str
) -> None:
    scratch = tmp_path if where == "same file system" else other_file_system_folder(album)
    if scratch is None:
        pytest.skip("no second file system to move across (/dev/shm)")
    destination, journal = scratch / "out", scratch / "moves.jsonl"
    before = hashes(album)
    environment = {**os.environ, CRASH_VARIABLE: crash}

    killed = subprocess.run(
        [sys.executable, "-c", MOVE_SCRIPT, str(album), str(destination), str(journal)],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    for entry in read_journal(journal):  # every journaled file: in one place, or two equal ones
        here, there = entry.source.exists(), entry.target.exists()
        assert here or there
        if here and there:
            assert crash.startswith("copied") and entry.source.read_bytes() == \
                entry.target.read_bytes()  # fmt: skip
    if then == "undo":
        undo_moves(journal)
        assert hashes(album) == before
    else:
        finish_moves(journal)
        moved = {path for group in TO_MOVE for path in group}
        journaled = {entry.source.relative_to(album).as_posix() for entry in read_journal(journal)}
        assert set(hashes(album)) == set(before) - journaled
        assert {path: before[path] for path in journaled} == {
            path: digest for path, digest in hashes(destination).items()
        }
        assert journaled <= moved
    if where != "same file system":
        subprocess.run(["rm", "-rf", str(scratch)], check=True)
