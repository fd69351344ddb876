"""Full MNIST 0/1/2: train a model (README recipe), time it, and measure MNIST test accuracy.

    python benchmarks/classification_mnist.py --model lenet
    python benchmarks/classification_mnist.py --model mobilenetv2

Writes the digits as folders (once) with `foldervision data mnist`, trains with the same code
as `foldervision train`, evaluates on the 3147 MNIST test images of 0/1/2, prints the figures
and the wall time against the target (LeNet: 60 s for 10 epochs; MobileNetV2: 15 min for the
whole recipe, data preparation included).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from foldervision.datasets import write_mnist_folders
from foldervision.inference import evaluate_folder
from foldervision.training import TrainingConfig, train

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TARGET_SECONDS = {"lenet": 60.0, "mobilenetv2": 15 * 60.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(TARGET_SECONDS))
    parser.add_argument("--source", default=str(SHARED_MNIST), help="MNIST IDX folder or URL.")
    parser.add_argument("--data", type=Path, default=Path("data/digits"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=42)
    arguments = parser.parse_args()
    out = arguments.out or Path("runs") / f"benchmark_{arguments.model}"

    started = time.perf_counter()
    if not (arguments.data / "train").is_dir():
        write_mnist_folders(arguments.data, arguments.source, [0, 1, 2])
    prepared = time.perf_counter()
    metrics = train(
        TrainingConfig(
            data=arguments.data / "train",
            out=out,
            model=arguments.model,
            seed=arguments.seed,
            overwrite=True,
            verbose=2,
        )
    )
    trained = time.perf_counter()
    test = evaluate_folder(out, arguments.data / "test")
    finished = time.perf_counter()

    target = TARGET_SECONDS[arguments.model]
    measured = (trained - prepared) if arguments.model == "lenet" else (finished - started)
    figures = {
        "model": arguments.model,
        "cpu_count": os.cpu_count(),
        "epochs": metrics["epochs"],
        "image_size": metrics["image_size"],
        "train_size": metrics["train_size"],
        "val_size": metrics["val_size"],
        "val_accuracy": metrics["val_accuracy"],
        "test_size": test["size"],
        "test_accuracy": test["accuracy"],
        "test_errors": int(round((1 - test["accuracy"]) * test["size"])),
        "data_preparation_seconds": round(prepared - started, 1),
        "train_seconds_fit_only": metrics["train_seconds"],
        "train_wall_seconds": round(trained - prepared, 1),
        "evaluate_seconds": round(finished - trained, 1),
        "total_wall_seconds": round(finished - started, 1),
        "target_seconds": target,
        "measured_against_target": f"{measured:.1f} s / {target:.0f} s = {measured / target:.2f}",
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
