"""Task 01 of the assignment: train LeNet from scratch on handwritten digits 0, 1 and 2.

A thin wrapper over `foldervision train --test`: 80/20 seeded split, augmentation, 10 epochs,
then the held-out test folder. Uses data/digits (from `foldervision data mnist`) when present,
else the sample digits shipped in samples/digits. Each run gets a new folder under runs/.

    python task_01_image_classification.py [--data FOLDER] [--out RUN] [--epochs 10] [--seed 42]
"""

from __future__ import annotations

from pathlib import Path

from foldervision.cli.assignment import run_task

if __name__ == "__main__":
    run_task("lenet", "task_01_lenet", __doc__.splitlines()[0], Path(__file__).name)
