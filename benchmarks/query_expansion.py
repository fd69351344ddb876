"""Does query expansion (alpha-QE, `--expand N`) help on every labelled collection?

Reads the vectors an index already holds (no embedding), so it takes seconds. For each seed,
every collection is split in two halves: its images, stratified by class, or, where a class
has too few images for a half to leave a query four others of its class (photo-edits: 8
per class), its classes. The setting (N, alpha)
is chosen on the calibration halves of all collections together (largest mean gain in mAP, or
in P@4 with --choose-by p4), and reported on the other halves, each half a leave-one-out
collection of its own: so no figure printed comes from the images it was chosen on. A default
is only worth turning on if its gain is positive on every collection, over the seeds.

Run:  python benchmarks/query_expansion.py FOLDER=INDEX [FOLDER=INDEX ...] [--seeds 5]
          [--neighbours 1,2,3,5,8] [--alphas 1,3,5] [--choose-by map]
e.g.  python benchmarks/query_expansion.py ../shared/data/flowers5=/tmp/q/flowers5.sqlite \\
          /tmp/q/collections/photo-edits=/tmp/q/photo-edits.sqlite \\
          /tmp/q/collections/mnist-digits=/tmp/q/mnist-digits.sqlite
(each index made first with `foldervision evaluate-retrieval FOLDER --index INDEX`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from foldervision.retrieval.catalogue import Catalogue
from foldervision.retrieval.evaluate import (
    LabelledVectors,
    RetrievalScores,
    labelled_vectors,
    leave_one_out_expansion,
    leave_one_out_scores,
)
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.reranking import QueryExpansion
from foldervision.retrieval.settings import IndexSettings

FIGURES = ("precision_at_1", "precision_at_4", "mean_average_precision", "ns_score")
SHORT = {"precision_at_1": "P@1", "precision_at_4": "P@4", "mean_average_precision": "mAP",
         "ns_score": "N-S"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", nargs="+", help="FOLDER=INDEX of a labelled folder.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--neighbours", default="1,2,3,5,8")
    parser.add_argument("--alphas", default="1,3,5")
    parser.add_argument("--choose-by", choices=("map", "p4"), default="map")
    arguments = parser.parse_args()
    objective = "mean_average_precision" if arguments.choose_by == "map" else "precision_at_4"
    grid = [QueryExpansion(int(n), float(alpha)) for n, alpha in itertools.product(
        arguments.neighbours.split(","), arguments.alphas.split(","))]  # fmt: skip
    collections = {short_name(spec.split("=")[0]): read(*spec.split("=", 1))
                   for spec in arguments.collections}  # fmt: skip
    for name, data in collections.items():
        print(f"{name}: {len(data.labels)} images, {len(data.class_names)} classes")
    gains: dict[str, list[dict[str, float]]] = {name: [] for name in collections}
    for seed in range(arguments.seeds):
        halves = {name: split(data, seed) for name, data in collections.items()}
        baselines = {name: scores(halves[name][0], None) for name in collections}
        chosen = max(grid, key=lambda expansion: np.mean([
            delta(scores(halves[name][0], expansion), baselines[name])[objective]
            for name in collections]))  # fmt: skip
        print(f"seed {seed}: chosen on the calibration halves: --expand {chosen.neighbours} "
              f"(alpha {chosen.alpha:g})")  # fmt: skip
        for name in collections:
            report = halves[name][1]
            before, after = scores(report, None), scores(report, chosen)
            gains[name].append(delta(after, before))
            print(f"  {name:<14} off " + figures(before) + "  |  on " + figures(after))
    print(f"gain of the chosen setting on the reported halves, mean (min..max) over "
          f"{arguments.seeds} seeds:")  # fmt: skip
    for name, rows in gains.items():
        spread = "  ".join(
            f"{SHORT[figure]} {np.mean([row[figure] for row in rows]):+.4f} "
            f"({min(row[figure] for row in rows):+.4f}..{max(row[figure] for row in rows):+.4f})"
            for figure in FIGURES
        )
        print(f"  {name:<14} {spread}")


def short_name(folder: str) -> str:
    """The folder and its parent: three seeds' `photo-edits` folders must not share a name."""
    return "/".join(Path(folder).resolve().parts[-2:])


def read(folder: str, index_path: str) -> LabelledVectors:
    """The stored vectors of a labelled folder's index, opened without building its network."""
    with opened_index(folder, index_path) as image_index:
        return labelled_vectors(image_index)


@contextlib.contextmanager
def opened_index(folder: str, index_path: str) -> Iterator[ImageIndex]:
    """A folder's index as it is (its stored spec), without building its network."""
    with contextlib.closing(Catalogue.open(index_path)) as catalogue:
        spec = catalogue.stored_spec()
    if spec is None:
        raise SystemExit(f"{index_path}: no vectors yet; run foldervision index first.")
    settings = IndexSettings(Path(folder), index_path=Path(index_path))
    with ImageIndex.open(settings, spec) as image_index:
        yield image_index


def split(data: LabelledVectors, seed: int) -> tuple[LabelledVectors, LabelledVectors]:
    """Two halves (calibrate, report): each class's images shuffled and dealt alternately,
    or the classes themselves when a class has fewer than 2 x (4 + 1) images."""
    rng = np.random.default_rng(seed)
    labels, counts = np.unique(data.labels, return_counts=True)
    first, second = [], []
    if counts.min() < 2 * (4 + 1):
        order = rng.permutation(labels)
        first = [np.flatnonzero(np.isin(data.labels, order[0::2]))]
        second = [np.flatnonzero(np.isin(data.labels, order[1::2]))]
    for label in labels if not first else []:
        rows = rng.permutation(np.flatnonzero(data.labels == label))
        first.append(rows[0::2])
        second.append(rows[1::2])
    return tuple(  # type: ignore[return-value]
        LabelledVectors(data.vectors[rows], data.labels[rows], data.ids[rows], data.class_names)
        for rows in (np.concatenate(first), np.concatenate(second))
    )


def scores(data: LabelledVectors, expansion: QueryExpansion | None) -> RetrievalScores:
    queries = (
        data.vectors if expansion is None else leave_one_out_expansion(data.vectors, expansion)
    )
    return leave_one_out_scores(data.vectors, data.labels, 4, queries)


def delta(after: RetrievalScores, before: RetrievalScores) -> dict[str, float]:
    return {figure: getattr(after, figure) - getattr(before, figure) for figure in FIGURES}


def figures(result: RetrievalScores) -> str:
    return "  ".join(f"{SHORT[figure]} {getattr(result, figure):.4f}" for figure in FIGURES)


if __name__ == "__main__":
    main()
