"""Full MNIST 0/1/2: train a model (README recipe) over several seeds and measure the spread.

    python benchmarks/classification_mnist.py --model lenet --seeds 1 2 3 4 5
    python benchmarks/classification_mnist.py --model mobilenetv2 --seeds 1 2 3 4 5 --json

One seed is not a measurement: the seed fixes the split, the initial weights, the shuffling and
the augmentation, but oneDNN's numerics differ between CPUs, so the same seed gives different
accuracies on different machines. This script writes the digits as folders (once) with
`foldervision data mnist`, then for each seed trains with the same code as `foldervision train`,
evaluates on the 3147 MNIST test images of 0/1/2 and prints one line per seed as it finishes,
then min / median / max of test accuracy, validation accuracy and training time. `--json` prints
the per-seed figures and the summary as one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from foldervision.datasets import write_mnist_folders
from foldervision.inference import evaluate_folder
from foldervision.training import TrainingConfig, resolve_settings, train

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TARGET_SECONDS = {"lenet": 60.0, "mobilenetv2": 15 * 60.0}
"""LeNet: 10 epochs of `model.fit`; MobileNetV2: the whole recipe, data preparation included."""
TARGET_TEST_ACCURACY = {"lenet": 0.997, "mobilenetv2": 0.998}
SUMMARISED = ("test_accuracy", "val_accuracy", "train_seconds_fit_only", "train_wall_seconds")


def run_seed(model: str, data: Path, out: Path, seed: int) -> dict[str, Any]:
    """Train one seed into `out`, test it on data/test, and return its figures."""
    started = time.perf_counter()
    config = TrainingConfig(
        data=data / "train", out=out, model=model, seed=seed, overwrite=True, verbose=2
    )
    metrics = train(resolve_settings(config))
    trained = time.perf_counter()
    test = evaluate_folder(out, data / "test")
    finished = time.perf_counter()
    return {
        "seed": seed,
        "run": str(out),
        "epochs": metrics.epochs,
        "best_epoch": metrics.best_epoch,
        "image_size": metrics.image_size,
        "train_size": metrics.train_size,
        "val_size": metrics.val_size,
        "val_accuracy": metrics.val_accuracy,
        "test_size": test["size"],
        "test_accuracy": test["accuracy"],
        "test_errors": int(round((1 - test["accuracy"]) * test["size"])),
        "train_seconds_fit_only": metrics.train_seconds,
        "train_wall_seconds": round(trained - started, 1),
        "evaluate_seconds": round(finished - trained, 1),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def summarise(model: str, runs: list[dict[str, Any]], preparation: float) -> dict[str, Any]:
    """Min / median / max over seeds, and the median against the targets."""
    summary = {key: spread([run[key] for run in runs]) for key in SUMMARISED}
    timed = "train_seconds_fit_only" if model == "lenet" else "train_wall_seconds"
    median_seconds = summary[timed]["median"] + (preparation if model == "mobilenetv2" else 0.0)
    return {
        "seeds": [run["seed"] for run in runs],
        **summary,
        "target_test_accuracy": TARGET_TEST_ACCURACY[model],
        "median_test_accuracy_meets_target": (
            summary["test_accuracy"]["median"] >= TARGET_TEST_ACCURACY[model]
        ),
        "target_seconds": TARGET_SECONDS[model],
        "median_seconds_against_target": (
            f"{median_seconds:.1f} s / {TARGET_SECONDS[model]:.0f} s "
            f"= {median_seconds / TARGET_SECONDS[model]:.2f}"
        ),
    }


def print_table(model: str, runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"\n{model}: {len(runs)} seed(s), MNIST test n={runs[0]['test_size']}")
    print(f"{'':>8} {'test acc':>9} {'val acc':>9} {'fit s':>8} {'train wall s':>13}")
    rows = [(f"seed {run['seed']}", run) for run in runs]
    for name in ("min", "median", "max"):
        rows.append((name, {key: summary[key][name] for key in SUMMARISED}))
    for name, row in rows:
        print(
            f"{name:>8} {row['test_accuracy']:>9.2%} {row['val_accuracy']:>9.2%} "
            f"{row['train_seconds_fit_only']:>8.1f} {row['train_wall_seconds']:>13.1f}"
        )
    verdict = "meets" if summary["median_test_accuracy_meets_target"] else "MISSES"
    print(
        f"median test accuracy {verdict} the target {summary['target_test_accuracy']:.1%}; "
        f"time: {summary['median_seconds_against_target']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(TARGET_SECONDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--source", default=str(SHARED_MNIST), help="MNIST IDX folder or URL.")
    parser.add_argument("--data", type=Path, default=Path("data/digits"))
    parser.add_argument("--out", type=Path, default=None, help="Runs go to OUT/seed_N.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    arguments = parser.parse_args()
    out = arguments.out or Path("runs") / f"benchmark_{arguments.model}"

    started = time.perf_counter()
    if not (arguments.data / "train").is_dir():
        write_mnist_folders(arguments.data, arguments.source, [0, 1, 2])
    preparation = time.perf_counter() - started

    runs = []
    for seed in arguments.seeds:
        runs.append(run_seed(arguments.model, arguments.data, out / f"seed_{seed}", seed))
        latest = runs[-1]
        print(
            f"{arguments.model} seed {seed}: test {latest['test_accuracy']:.4%} "
            f"({latest['test_errors']} errors), val {latest['val_accuracy']:.4%}, "
            f"fit {latest['train_seconds_fit_only']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    summary = summarise(arguments.model, runs, preparation)
    if arguments.json:
        machine = {"cpu_count": os.cpu_count(), "processor": platform.processor()}
        figures = {
            "model": arguments.model,
            "machine": machine,
            "data_preparation_seconds": round(preparation, 1),
            "runs": runs,
            "summary": summary,
        }
        print(json.dumps(figures, indent=2))
    else:
        print_table(arguments.model, runs, summary)


if __name__ == "__main__":
    main()
