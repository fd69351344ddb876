"""`foldervision train` with its defaults on a labelled photo folder, against a fair linear probe.

(a) Linear probe: logistic regression on the retrieval embedder's vectors (ImageNet MobileNetV2,
224 px, GeM, L2-normalised), regularisation chosen by 4-fold cross-validation on the training
part only. (b) `foldervision train DATA --out RUN` with no other option, as its own process:
wall time and peak RSS. Both use the same seeded split (the run's split.json).

    python benchmarks/photo_training.py                          # flowers5, all photos
    python benchmarks/photo_training.py --train-per-class 64     # 64 training photos per class,
                                                                 # tested on held-out photos
    python benchmarks/photo_training.py --files 1000 --no-probe  # memory at 1k photos
    python benchmarks/photo_training.py --train-per-class 64 --seeds 1,2,3,4,5
                                                    # train vs probe: min / median / max
    python benchmarks/photo_training.py --train-per-class 64 --uneven 2:10 --seeds 1,2,3,4,5
                                                    # the last 2 classes with 10 training photos

Test folders stay balanced, so balanced accuracy (mean per-class recall) is reported beside
accuracy; on uneven folders the probe is also fitted with balanced class weights.
Each seed's run goes to OUT-seedN (--out, default runs/benchmark_photo). Subsets are folders of
symbolic links in a temporary folder; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "flowers5"


def class_files(data: Path) -> dict[str, list[Path]]:
    from foldervision.datasets import scan_labelled_folder

    folder = scan_labelled_folder(data)
    return {
        name: [path for path, label in zip(folder.paths, folder.labels) if label == index]
        for index, name in enumerate(folder.class_names)
    }


def link_subset(files: dict[str, list[Path]], target: Path) -> Path:
    for name, paths in files.items():
        (target / name).mkdir(parents=True)
        for path in paths:
            (target / name / path.name).symlink_to(path.resolve())
    return target


def make_subsets(
    arguments: argparse.Namespace, workspace: Path, seed: int
) -> tuple[Path, Path | None]:
    """The folder to train on, and a held-out test folder (only with --train-per-class)."""
    if arguments.train_per_class is None and arguments.files is None:
        return arguments.data, None
    generator = np.random.default_rng(seed)
    files = {
        name: list(generator.permutation(paths))
        for name, paths in class_files(arguments.data).items()
    }
    if arguments.files is not None:
        total = sum(len(paths) for paths in files.values())
        chosen = {
            name: paths[: round(len(paths) * arguments.files / total)]
            for name, paths in files.items()
        }
        return link_subset(chosen, workspace / "train"), None
    # train's split keeps 20% of the folder for validation: 80 photos give 64 for training.
    per_class = round(arguments.train_per_class / (1 - arguments.val_split))
    sizes = {name: per_class for name in files}
    if arguments.uneven:
        small_classes, small_count = map(int, arguments.uneven.split(":"))
        for name in sorted(files)[-small_classes:]:
            sizes[name] = round(small_count / (1 - arguments.val_split))
    train = {name: paths[: sizes[name]] for name, paths in files.items()}
    test = {
        name: paths[per_class : per_class + arguments.test_per_class]
        for name, paths in files.items()
    }
    return link_subset(train, workspace / "train"), link_subset(test, workspace / "test")


def run_train(data: Path, out: Path, test: Path | None, extra: list[str]) -> dict:
    """The CLI as a user runs it: defaults only (plus `extra`), wall time and peak RSS."""
    from foldervision.inference import run_summary

    command = [sys.executable, "-m", "foldervision", "train", str(data), "--out", str(out)]
    command += ["--overwrite", *extra]
    if test is not None:
        command += ["--test", str(test)]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = run_summary(out)
    metrics = summary.metrics
    return {
        "recipe": metrics.recipe,
        "image_size": metrics.image_size,
        "val_accuracy": metrics.val_accuracy,
        "test_accuracy": summary.test["accuracy"] if summary.test else None,
        "test_balanced_accuracy": summary.test.get("balanced_accuracy") if summary.test else None,
        "recipe_reason": metrics.recipe_reason,
        "wall_seconds": round(seconds, 1),
        "fit_seconds": metrics.train_seconds,
        "peak_rss_gb": round(peak_kib / 2**20, 2),
        "train_size": metrics.train_size,
        "val_size": metrics.val_size,
    }


def embed(paths: list[Path], embedder: Any = None) -> np.ndarray:
    """The vectors of `paths` by `embedder` (default: the index's MobileNetV2 embedder)."""
    from foldervision.retrieval.embedder import mobilenetv2_embedder

    embedder = embedder or mobilenetv2_embedder()
    vectors = []
    for batch in embedder.embed_files(paths):
        if batch.skipped:
            raise SystemExit(f"probe: cannot embed {batch.skipped[0].path}")
        vectors.append(batch.vectors)
    return np.concatenate(vectors)


def linear_probe(run: Path, data: Path, test: Path | None, seed: int) -> dict:
    """Logistic regression on the embedder's vectors; C by 4-fold CV on the training part."""
    from sklearn.linear_model import LogisticRegressionCV

    from foldervision.datasets import scan_labelled_folder

    split = json.loads((run / "split.json").read_text())
    sides = {side: split[side] for side in ("train", "validation")}
    started = time.perf_counter()
    vectors = {side: embed([data / path for path, _ in items]) for side, items in sides.items()}
    labels = {side: np.array([label for _, label in items]) for side, items in sides.items()}
    if test is not None:
        test_folder = scan_labelled_folder(test, class_names=split["classes"])
        vectors["test"], labels["test"] = embed(test_folder.paths), test_folder.labels
    embedded = time.perf_counter()
    figures: dict = {"embed_seconds": round(embedded - started, 1)}
    uneven = np.bincount(labels["train"]).max() > 3 * np.bincount(labels["train"]).min()
    for name, class_weight in (("", None), ("balanced_", "balanced")):
        if class_weight and not uneven:
            continue
        probe = LogisticRegressionCV(
            Cs=np.logspace(-2, 3, 11),
            cv=4,
            max_iter=3000,
            random_state=seed,
            class_weight=class_weight,
        ).fit(vectors["train"], labels["train"])
        for side in vectors:
            if side == "train":
                continue
            predicted = probe.predict(vectors[side])
            key = "val" if side == "validation" else side
            figures[f"{name}{key}_accuracy"] = float((predicted == labels[side]).mean())
            figures[f"{name}{key}_balanced_accuracy"] = balanced_accuracy(labels[side], predicted)
        figures[f"{name}C"] = float(probe.C_[0])
    figures["fit_seconds"] = round(time.perf_counter() - embedded, 1)
    return figures


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall (what `evaluate` reports as balanced accuracy)."""
    return float(np.mean([(predicted[labels == c] == c).mean() for c in np.unique(labels)]))


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max over seeds: a quality claim is a spread, not one run."""
    return {
        "min": round(float(np.min(values)), 4),
        "median": round(float(np.median(values)), 4),
        "max": round(float(np.max(values)), 4),
    }


def one_seed(arguments: argparse.Namespace, seed: int) -> dict:
    """Train (defaults, --seed SEED) and the probe on the same split of the same subset."""
    with tempfile.TemporaryDirectory(prefix="photo-benchmark-") as workspace:
        data, test = make_subsets(arguments, Path(workspace), seed)
        out = arguments.out.with_name(f"{arguments.out.name}-seed{seed}")
        extra = [*arguments.train_args, "--seed", str(seed)]
        trained = run_train(data, out, test, extra)
        figures = {"seed": seed, "train": trained}
        if not arguments.no_probe:
            figures["probe"] = probe = linear_probe(out, data, test, seed)
            figures["val_points_above_probe"] = round(
                100 * (trained["val_accuracy"] - probe["val_accuracy"]), 2
            )
            if test is not None:
                figures["test_points_above_probe"] = round(
                    100 * (trained["test_accuracy"] - probe["test_accuracy"]), 2
                )
                best_probe = max(
                    probe["test_balanced_accuracy"],
                    probe.get("balanced_test_balanced_accuracy", 0.0),
                )
                figures["test_balanced_points_above_best_probe"] = round(
                    100 * (trained["test_balanced_accuracy"] - best_probe), 2
                )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train-per-class", type=int, help="training photos per class")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--files", type=int, help="train on a stratified subset of N photos")
    parser.add_argument("--val-split", type=float, default=0.2, help="train's default")
    parser.add_argument("--seed", type=int, default=42, help="train's default")
    parser.add_argument(
        "--seeds", help="comma-separated seeds (subset, split and training); default: --seed"
    )
    parser.add_argument(
        "--uneven",
        help="SMALL:COUNT: the last SMALL classes (by name) get COUNT training photos "
        "(with --train-per-class; the test folder stays balanced)",
    )
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_photo"))
    parser.add_argument("train_args", nargs="*", help="extra `train` options, after --")
    arguments = parser.parse_args()
    if arguments.uneven and arguments.train_per_class is None:
        parser.error("--uneven needs --train-per-class")

    seeds = [int(seed) for seed in (arguments.seeds or str(arguments.seed)).split(",")]
    runs = [one_seed(arguments, seed) for seed in seeds]
    figures: dict = {"data": str(arguments.data.resolve()), "uneven": arguments.uneven}
    figures["runs"] = runs
    keys = [
        "test_points_above_probe",
        "test_balanced_points_above_best_probe",
        "val_points_above_probe",
    ]
    series = {
        "train_test_accuracy": [run["train"]["test_accuracy"] for run in runs],
        "train_test_balanced_accuracy": [run["train"]["test_balanced_accuracy"] for run in runs],
        "probe_test_accuracy": [run.get("probe", {}).get("test_accuracy") for run in runs],
        "balanced_probe_test_accuracy": [
            run.get("probe", {}).get("balanced_test_accuracy") for run in runs
        ],
        **{key: [run.get(key) for run in runs] for key in keys},
    }
    figures["spread"] = {
        key: spread(values) for key, values in series.items() if None not in values
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
