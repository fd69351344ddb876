"""Task 01 of the assignment: train LeNet from scratch on handwritten digits 0, 1 and 2.

A thin wrapper over `foldervision train/evaluate`: 80/20 seeded split, augmentation, 10 epochs,
then the held-out test folder. Uses data/digits (from `foldervision data mnist`) when present,
else the sample digits shipped in samples/digits.

    python task_01_image_classification.py [--data FOLDER] [--out RUN] [--epochs 10] [--seed 42]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foldervision.cli.app import console
from foldervision.inference import evaluate_folder
from foldervision.training import TrainingConfig, train


def default_data() -> Path:
    full = Path("data/digits")
    return full if (full / "train").is_dir() else Path("samples/digits")


def free_run_folder(base: Path) -> Path:
    """runs/task_01_lenet, or -2, -3, ... so an earlier run is never overwritten."""
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def main(model: str = "lenet", run_name: str = "task_01_lenet", extra: dict | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    arguments = parser.parse_args()
    out = arguments.out or free_run_folder(Path("runs") / run_name)
    try:
        config = TrainingConfig(data=arguments.data / "train", out=out, model=model,
                                epochs=arguments.epochs, val_split=0.2, seed=arguments.seed,
                                **(extra or {}))
        metrics = train(config)
        console.print(f"{model}: validation accuracy {100 * metrics['val_accuracy']:.2f}% on "
                      f"{metrics['val_size']} images ({metrics['train_seconds']:.0f} s)")
        test_folder = arguments.data / "test"
        if test_folder.is_dir():
            test = evaluate_folder(out, test_folder)
            console.print(f"{model}: test accuracy {100 * test['accuracy']:.2f}% on "
                          f"{test['size']} images ({test_folder})")
    except ValueError as error:
        console.print(f"error: {error}", markup=False)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
