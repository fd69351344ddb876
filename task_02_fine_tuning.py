"""Task 02 of the assignment: fine-tune ImageNet-pretrained MobileNetV2 on digits 0, 1 and 2.

A thin wrapper over `foldervision train --model mobilenetv2 --test`: the same split,
augmentation and reports as task 01, then the held-out test folder; weights resolved offline
(see README, "Pretrained weights"). Uses data/digits (from `foldervision data mnist`) when
present, else the sample digits shipped in samples/digits. Each run gets a new folder under runs/.

    python task_02_fine_tuning.py [--data FOLDER] [--out RUN] [--epochs N] [--seed 42]
"""

from __future__ import annotations

from pathlib import Path

from foldervision.cli.assignment import run_task

if __name__ == "__main__":
    run_task("mobilenetv2", "task_02_mobilenetv2", __doc__.splitlines()[0], Path(__file__).name)
