"""Task 02 of the assignment: fine-tune ImageNet-pretrained MobileNetV2 on digits 0, 1 and 2.

A thin wrapper over `foldervision train --model mobilenetv2`: the same split, augmentation and
reports as task 01; weights resolved offline (see README, "Pretrained weights").

    python task_02_fine_tuning.py [--data FOLDER] [--out RUN] [--epochs N] [--seed 42]
"""

from __future__ import annotations

import sys

from task_01_image_classification import main

if __name__ == "__main__":
    sys.exit(main(model="mobilenetv2", run_name="task_02_mobilenetv2"))
