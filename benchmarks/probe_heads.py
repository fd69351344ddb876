"""Heads on frozen vectors of three backbones side by side, against the fair probe (issue 22).

`backbone_probes.py` found that a logistic regression on MobileNetV2, EfficientNet-Lite0 and
Lite2 vectors side by side beat the fair probe by 2 points on every balanced seed, but not on
uneven folders. This tries other heads on the same vectors, read from indexes already built
(`foldervision index FOLDER --index I --model M`, default settings: the vectors are exactly the
ones `backbone_probes.py` embeds), so each seed costs the fits alone:
  A  logistic regression on the vectors side by side (backbone_probes.py's "all three")
  B  the same after "square root, centred on the training photos' mean"
  C  the mean of the three backbones' own logistic regressions' probabilities
  D  A with C chosen by balanced accuracy in the cross-validation
  E  nearest class mean by cosine on B's vectors (SimpleShot's CL2N)
Each is fitted with balanced class weights on uneven folders. Draws, test photos and the
baseline are backbone_probes.py's (on uneven folders the better on the test photos of the plain
and the class-weighted MobileNetV2 probe, which favours the baseline).
`--whole SEED` instead fits the probe on all photos of the folder but a stratified fifth and
tests on that fifth, MobileNetV2 against the three side by side.

Run:  python benchmarks/probe_heads.py MOBILENETV2_INDEX LITE0_INDEX LITE2_INDEX
          [--data ../shared/data/flowers5] [--seeds 0,1,2] [--uneven] [--heads A,B,C,D,E]
      python benchmarks/probe_heads.py ... --whole 42
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from backbone_probes import draw
from photo_training import DEFAULT_DATA, balanced_accuracy
from side_by_side import read, unit

HEADS = ("A", "B", "C", "D", "E")
Views = list[list[np.ndarray]]
"""Per backbone, [training vectors, test vectors]."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("indexes", nargs=3, help="MobileNetV2, Lite0 and Lite2 indexes.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--uneven", action="store_true", help="The last 2 classes: 10 photos.")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--whole", type=int, help="Seed of a 4:1 split of the whole folder.")
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-learn 1.8 notices
    stored = [read(str(arguments.data), index) for index in arguments.indexes]
    if arguments.whole is not None:
        whole_folder(arguments.data, stored, arguments.whole)
        return
    heads = arguments.heads.split(",")
    runs = []
    for seed in map(int, arguments.seeds.split(",")):
        started = time.perf_counter()
        train, test = draw(arguments.data, seed, arguments.uneven)
        sides = [[path for path, _ in part] for part in (train, test)]
        vectors = [[vectors_of(arguments.data, one, paths) for paths in sides] for one in stored]
        labels = [np.array([label for _, label in part]) for part in (train, test)]
        accuracies = {"probe": fair_probe(vectors[0], labels, seed, arguments.uneven)}
        for head in heads:
            predicted = HEAD_FUNCTIONS[head](vectors, labels[0], seed, arguments.uneven)
            accuracies[head] = balanced_accuracy(labels[1], predicted)
        runs.append(accuracies)
        shown = "  ".join(f"{name} {100 * value:.1f}" for name, value in accuracies.items())
        print(f"seed {seed}: {shown}  ({time.perf_counter() - started:.0f} s)", flush=True)
    print("points above the fair probe, min / median / max over the seeds:")
    for head in heads:
        gains = [100 * (run[head] - run["probe"]) for run in runs]
        mean = 100 * np.mean([run[head] for run in runs])
        print(f"  {head}  mean {mean:.2f}%   "
              f"{min(gains):+.1f} / {np.median(gains):+.1f} / {max(gains):+.1f}")  # fmt: skip


def vectors_of(data: Path, stored: dict[str, np.ndarray], paths: list[Path]) -> np.ndarray:
    missing = [path for path in paths if str(path.relative_to(data)) not in stored]
    if missing:
        raise SystemExit(f"{missing[0]}: not in the index; run foldervision index first.")
    return unit(np.stack([stored[str(path.relative_to(data))] for path in paths]))


def regression(features: np.ndarray, labels: np.ndarray, seed: int, uneven: bool, **options):
    from sklearn.linear_model import LogisticRegressionCV

    return LogisticRegressionCV(
        Cs=np.logspace(-2, 3, 11), cv=4, max_iter=3000, random_state=seed,
        class_weight="balanced" if uneven else None, **options,
    ).fit(features, labels)  # fmt: skip


def fair_probe(vectors: list[np.ndarray], labels: list[np.ndarray], seed: int, uneven: bool):
    weightings = (False, True) if uneven else (False,)
    return max(
        balanced_accuracy(labels[1], regression(vectors[0], labels[0], seed, w).predict(vectors[1]))
        for w in weightings
    )


def side_by_side(vectors: Views) -> list[np.ndarray]:
    return [unit(np.hstack([one[side] for one in vectors])) for side in (0, 1)]


def rooted_centred(train: np.ndarray, test: np.ndarray) -> list[np.ndarray]:
    rooted = [unit(np.sqrt(np.clip(side, 0.0, None))) for side in (train, test)]
    mean = rooted[0].mean(axis=0)
    return [unit(side - mean) for side in rooted]


def head_a(vectors: Views, labels: np.ndarray, seed: int, uneven: bool) -> np.ndarray:
    train, test = side_by_side(vectors)
    return regression(train, labels, seed, uneven).predict(test)


def head_b(vectors: Views, labels: np.ndarray, seed: int, uneven: bool) -> np.ndarray:
    train, test = rooted_centred(*side_by_side(vectors))
    return regression(train, labels, seed, uneven).predict(test)


def head_c(vectors: Views, labels: np.ndarray, seed: int, uneven: bool) -> np.ndarray:
    probabilities = sum(
        regression(train, labels, seed, uneven).predict_proba(test) for train, test in vectors
    )
    return probabilities.argmax(axis=1)


def head_d(vectors: Views, labels: np.ndarray, seed: int, uneven: bool) -> np.ndarray:
    train, test = side_by_side(vectors)
    return regression(train, labels, seed, uneven, scoring="balanced_accuracy").predict(test)


def head_e(vectors: Views, labels: np.ndarray, seed: int, uneven: bool) -> np.ndarray:
    train, test = rooted_centred(*side_by_side(vectors))
    means = unit(np.stack([train[labels == label].mean(axis=0) for label in np.unique(labels)]))
    return (test @ means.T).argmax(axis=1)


HEAD_FUNCTIONS = {"A": head_a, "B": head_b, "C": head_c, "D": head_d, "E": head_e}


def whole_folder(data: Path, stored: list[dict[str, np.ndarray]], seed: int) -> None:
    from sklearn.model_selection import train_test_split

    from foldervision.datasets import scan_labelled_folder

    labelled = scan_labelled_folder(data)
    paths, labels = list(labelled.paths), labelled.labels
    train, test = train_test_split(
        np.arange(len(paths)), test_size=0.2, stratify=labels, random_state=seed
    )
    vectors = [vectors_of(data, one, paths) for one in stored]
    for name, chosen in (("mobilenetv2", vectors[:1]), ("all three", vectors)):
        features = unit(np.hstack(chosen))
        started = time.perf_counter()
        probe = regression(features[train], labels[train], seed, uneven=False)
        accuracy = float(np.mean(probe.predict(features[test]) == labels[test]))
        print(f"{name}: {100 * accuracy:.2f}% on {len(test)} photos (C={probe.C_[0]:.3g}, "
              f"fit {time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
