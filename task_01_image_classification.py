"""Task 01 of the assignment: train LeNet from scratch on handwritten digits 0, 1 and 2.

A thin wrapper over `foldervision train --test`: 80/20 seeded split, augmentation, 10 epochs,
then the held-out test folder. Uses data/digits (from `foldervision data mnist`) when present,
else the sample digits shipped in samples/digits. Each run gets a new folder under runs/.

    python task_01_image_classification.py [--data FOLDER] [--out RUN] [--epochs 10] [--seed 42]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from foldervision.cli import app
from foldervision.runs import free_run_folder

MODEL = "lenet"
RUN_NAME = "task_01_lenet"


def default_data() -> Path:
    full = Path("data/digits")
    return full if (full / "train").is_dir() else Path("samples/digits")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="has train/ and test/")
    parser.add_argument("--out", type=Path, help=f"run folder (default: runs/{RUN_NAME}[-N])")
    parser.add_argument("--epochs", type=int, help="default: the model's recipe")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    out = arguments.out or free_run_folder(Path("runs") / RUN_NAME)
    command = ["train", str(arguments.data / "train"), "--model", MODEL, "--out", str(out)]
    command += ["--val-split", "0.2", "--seed", str(arguments.seed)]
    if arguments.epochs is not None:
        command += ["--epochs", str(arguments.epochs)]
    if (arguments.data / "test").is_dir():
        command += ["--test", str(arguments.data / "test")]
    app(command, prog_name=Path(__file__).name)


if __name__ == "__main__":
    main()
