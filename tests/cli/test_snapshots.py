"""What a user reads: the plain output of the main commands, compared with committed snapshots.

Each command runs as a user runs it (a fresh process, relative paths from a small workspace),
and its exit code, stdout and stderr are compared with tests/snapshots/NAME.txt, so a change in
what a user reads shows up in review. After a deliberate change, regenerate and review the diff:

    FOLDERVISION_UPDATE_SNAPSHOTS=1 python -m pytest tests/cli/test_snapshots.py

Only what varies between runs is normalised: timings (ms per image, training seconds), the
workspace's temporary folder, the plot name's hash of that folder's path, and the last digits
of full-precision floats in --json output. Those repeat exactly on one machine, but float32
sums differ in the seventh digit between CPUs (a CI machine printed 0.49383148550987244 where
this snapshot's machine printed 0.49383124709129333), so they are compared to three decimals,
as the plain output shows four.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from image_fixtures import REPO
from photo_library import FIXED_FILE_TIME, camera_exif
from PIL import Image
from typer.testing import CliRunner
from user_process import run_cli

from foldervision.cli import app

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
UPDATE_VARIABLE = "FOLDERVISION_UPDATE_SNAPSHOTS"
SIZE = ["--image-size", "96"]  # the retrieval tests' size: the ONNX export is shared with them

TIMINGS = [
    (re.compile(r"\(\d+\.\d+ ms/image\)"), "(<ms> ms/image)"),
    (re.compile(r"\| \d+ s \| (?:\d+\.\d+|-) \|$", re.MULTILINE), "| <seconds> s | <ms> |"),
    (re.compile(r"-[0-9a-f]{8}_confusion_matrix\.png"), "-<hash>_confusion_matrix.png"),
    (re.compile(r"updated \d{4}-\d\d-\d\d \d\d:\d\d \S+"), "updated <time>"),
]


@dataclass(frozen=True)
class Transcript:
    """One command as a terminal shows it: the command, its exit code, then what it printed."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    def text(self) -> str:
        return normalise(
            f"$ {self.command}\n[exit {self.exit_code}]\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


FULL_PRECISION_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d{7,})(?![\w.])")


def normalise(text: str) -> str:
    for pattern, replacement in TIMINGS:
        text = pattern.sub(replacement, text)
    return FULL_PRECISION_FLOAT.sub(lambda match: f"{float(match.group(1)):.3f}", text)


def assert_matches_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get(UPDATE_VARIABLE) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path}: no snapshot yet; run with {UPDATE_VARIABLE}=1 and review it"
    assert text == path.read_text(encoding="utf-8")


def run_in(workspace: Path, *arguments: str) -> Transcript:
    result = run_cli(*arguments, cwd=workspace)
    command = " ".join(["foldervision", *arguments])
    stdout = result.stdout.replace(str(workspace), "<workspace>")
    stderr = result.stderr.replace(str(workspace), "<workspace>")
    return Transcript(command, result.returncode, stdout, stderr)


# --------------------------------------------------------------------------------------------
# The workspace: the assignment's folders, a labelled folder, a few photos and a trained run.


def write_photos(folder: Path) -> None:
    """Three real photos (two with a camera's EXIF), a smaller re-saved copy of one (a
    near-duplicate), a broken file; all with one file time, so `info` reads the same dates."""
    import skimage.data

    folder.mkdir()
    astronaut = Image.fromarray(skimage.data.astronaut()).resize((160, 160))
    astronaut.save(
        folder / "astronaut.jpg",
        quality=90,
        exif=camera_exif(
            taken="2019:08:10 11:00:00", make="Canon", model="Canon EOS 5D", position=(48.86, 2.29)
        ),
    )
    astronaut.resize((120, 120)).save(folder / "astronaut small.png")
    Image.fromarray(skimage.data.chelsea()).resize((160, 120)).save(
        folder / "chelsea.jpg",
        exif=camera_exif(taken="2023:06:02 09:15:00", make="Apple", model="iPhone 12"),
    )
    Image.fromarray(skimage.data.coffee()).resize((160, 120)).save(folder / "coffee.jpg")
    (folder / "broken.jpg").write_bytes((folder / "chelsea.jpg").read_bytes()[:300])
    for path in folder.iterdir():
        os.utime(path, (FIXED_FILE_TIME, FIXED_FILE_TIME))


def write_labelled(folder: Path, sample_digits: Path) -> None:
    """Four test digits of each class: a small labelled folder for the evaluations."""
    for digit in ("0", "1", "2"):
        (folder / digit).mkdir(parents=True)
        for path in sorted((sample_digits / "test" / digit).glob("*.png"))[:4]:
            shutil.copy2(path, folder / digit / path.name)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sample_digits, lenet_run) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(REPO / "images_database", root / "images_database")
    shutil.copytree(REPO / "query_images", root / "query_images")
    write_labelled(root / "labelled", sample_digits)
    write_photos(root / "photos")
    run, _ = lenet_run  # other tests record evaluations in it: copy the run as trained
    shutil.copytree(run, root / "runs" / "lenet", ignore=shutil.ignore_patterns("evaluation*"))
    return root


@pytest.fixture(scope="module")
def transcripts(workspace: Path) -> dict[str, Transcript]:
    """Every command once, in the order a user would type them (search after index, compare
    after evaluate), whichever of the tests below runs."""
    first_digits = [
        sorted((workspace / "labelled" / digit).iterdir())[0].relative_to(workspace).as_posix()
        for digit in ("2", "0")
    ]
    commands = {
        "index": ["index", "images_database", *SIZE],
        "search": ["search", "query_images/q1.png", "--database", "images_database", *SIZE],
        "search-json": [
            "search", "query_images/q1.png", "query_images/q4.jpg", "--database",
            "images_database", "-k", "3", "--json", *SIZE,
        ],
        "duplicates": ["duplicates", "photos", *SIZE],
        "info": ["info", "photos"],
        "evaluate-retrieval": ["evaluate-retrieval", "labelled", "-k", "3", *SIZE],
        "evaluate": ["evaluate", "runs/lenet", "labelled"],
        "predict": ["predict", "runs/lenet", *first_digits, "photos/broken.jpg"],
        "compare": ["compare", "runs/lenet"],
    }  # fmt: skip
    return {name: run_in(workspace, *arguments) for name, arguments in commands.items()}


@pytest.mark.parametrize(
    "name",
    [
        "index",
        "search",
        "search-json",
        "duplicates",
        "info",
        "evaluate-retrieval",
        "evaluate",
        "predict",
        "compare",
    ],
)
def test_plain_output_matches_the_snapshot(transcripts: dict[str, Transcript], name: str) -> None:
    assert_matches_snapshot(name, transcripts[name].text())


# --------------------------------------------------------------------------------------------
# A folder that is not there: one line on stderr, exit code 2, from every command that takes one.
# In-process (the real-process check, with TensorFlow's start-up quiet, is in
# test_tensorflow_startup.py); the task scripts run as __main__, as `python SCRIPT` does.

MISSING_FOLDER_COMMANDS = {
    "train": ["train", "missing", "--out", "run"],
    "index": ["index", "missing"],
    "search": ["search", "query.png", "--database", "missing"],
    "duplicates": ["duplicates", "missing"],
    "evaluate-retrieval": ["evaluate-retrieval", "missing"],
    "serve": ["serve", "missing"],
    "info": ["info", "missing"],
    "evaluate": ["evaluate", "RUN", "missing"],
    "data-mnist": ["data", "mnist", "--out", "digits", "--source", "missing"],
}
TASK_SCRIPTS = ["task_01_image_classification.py", "task_02_fine_tuning.py"]


def run_task_script(script: str, capsys: pytest.CaptureFixture[str]) -> Transcript:
    arguments = ["--data", "missing", "--out", "run"]
    sys.argv = [script, *arguments]
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / script), run_name="__main__")
    captured = capsys.readouterr()
    command = " ".join(["python", script, *arguments])
    return Transcript(command, exit_.value.code, captured.out, captured.err)


@pytest.mark.parametrize("name", [*MISSING_FOLDER_COMMANDS, *TASK_SCRIPTS])
def test_a_missing_folder_is_one_line_and_exit_code_2(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, request
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    if name in TASK_SCRIPTS:
        transcript = run_task_script(name, capsys)
    else:
        arguments = MISSING_FOLDER_COMMANDS[name]
        if "RUN" in arguments:  # a real run, so that the data folder is what is missing
            run = str(request.getfixturevalue("lenet_run")[0])
            arguments = [run if argument == "RUN" else argument for argument in arguments]
        result = CliRunner().invoke(app, arguments)
        command = " ".join(["foldervision", *MISSING_FOLDER_COMMANDS[name]])
        transcript = Transcript(command, result.exit_code, result.stdout, result.stderr)

    assert transcript.exit_code == 2, transcript.text()
    assert transcript.stdout == "" and len(transcript.stderr.splitlines()) == 1
    assert_matches_snapshot(f"missing-folder/{name.removesuffix('.py')}", transcript.text())
    assert list(tmp_path.iterdir()) == [], "nothing is written for a folder that is not there"
