"""The assignment's classification scripts, as one thin wrapper over `foldervision train --test`.

`task_01_image_classification.py` (LeNet) and `task_02_fine_tuning.py` (MobileNetV2) differ
only in the model and the run folder's name; both call `run_task`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from foldervision.cli.app import app
from foldervision.runs import free_run_folder


def default_data() -> Path:
    """data/digits (from `foldervision data mnist`) when present, else the shipped samples."""
    full = Path("data/digits")
    return full if (full / "train").is_dir() else Path("samples/digits")


def run_task(model: str, run_name: str, description: str, script_name: str) -> None:
    """Parse the script's few options, then train with an 80/20 seeded split and test."""
    parser = argparse.ArgumentParser(prog=script_name, description=description)
    parser.add_argument("--data", type=Path, default=default_data(), help="has train/ and test/")
    parser.add_argument("--out", type=Path, help=f"run folder (default: runs/{run_name}[-N])")
    parser.add_argument("--epochs", type=int, help="epochs of the last phase (default: recipe)")
    parser.add_argument("--seed", type=int, default=42)
    arguments = parser.parse_args()
    out = arguments.out or free_run_folder(Path("runs") / run_name)
    command = ["train", str(arguments.data / "train"), "--model", model, "--out", str(out)]
    command += ["--val-split", "0.2", "--seed", str(arguments.seed)]
    if arguments.epochs is not None:
        command += ["--epochs", str(arguments.epochs)]
    if (arguments.data / "test").is_dir():
        command += ["--test", str(arguments.data / "test")]
    app(command, prog_name=script_name)
