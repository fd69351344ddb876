"""The assignment's script names run the same code as the CLI.

Their one-line refusal of a missing folder is checked in-process with every command's, in
tests/cli/test_snapshots.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from image_fixtures import REPO


def run_script(name: str, *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / name), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_task_01_trains_and_evaluates_on_the_samples_in_a_new_run_folder(tmp_path):
    earlier = tmp_path / "runs" / "task_01_lenet"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("an earlier run")

    data = str(REPO / "samples" / "digits")
    result = run_script(
        "task_01_image_classification.py", "--data", data, "--epochs", "1", "--seed", "3",
        cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(Path("runs") / "task_01_lenet-2")
    out = tmp_path / "runs" / "task_01_lenet-2"
    assert "validation accuracy" in result.stderr and "test accuracy" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["model"], metrics["epochs"], metrics["seed"]) == ("lenet", 1, 3)
    assert (out / "evaluations.json").exists()
    assert (earlier / "metrics.json").read_text() == "an earlier run"
