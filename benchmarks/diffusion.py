"""Does diffusion re-ranking (`--diffuse`) help on every labelled collection?

Reads the vectors an index already holds (no embedding). For each seed, every collection is
split in two halves as in `query_expansion.py` (stratified by class, or by class where
classes are small). A grid of settings (shortlist M, graph neighbours k, alpha, seeds) is
scored on the calibration halves with a fast sparse copy of the method (`sweep`); the setting
with the largest mean gain (in P@4, or mAP with --choose-by map) is then scored on the other
halves and on the whole collections with the product's own code
(`evaluate.leave_one_out_scores(..., diffusion=...)`), leave-one-out: the query is left out of
its own shortlist, as `search --diffuse` leaves out a photo's own stored vector.

Run:  python benchmarks/diffusion.py FOLDER=INDEX [FOLDER=INDEX ...] [--seeds 0]
          [--choose-by p4|map] [--setting M,k,alpha,seeds]
(--setting skips the choice and reports that setting on both halves of each seed; each index
made first with `foldervision evaluate-retrieval FOLDER --index INDEX`).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import scipy.sparse
from query_expansion import read, short_name, split

from foldervision.retrieval.evaluate import LabelledVectors, leave_one_out_scores
from foldervision.retrieval.reranking import (
    DIFFUSION_GAMMA,
    DIFFUSION_STEPS,
    SAME_VECTOR_DISTANCE,
    Diffusion,
)

GRID = [
    Diffusion(shortlist, neighbours, alpha, seeds)
    for shortlist, neighbours, alpha, seeds in itertools.product(
        (200, 1000), (10, 30), (0.8, 0.9), (3, 5)
    )
]
FIGURES = {"precision_at_1": "P@1", "precision_at_4": "P@4", "mean_average_precision": "mAP"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", nargs="+", help="FOLDER=INDEX of a labelled folder.")
    parser.add_argument("--seeds", default="0", help="Comma-separated split seeds.")
    parser.add_argument("--choose-by", choices=("p4", "map"), default="p4")
    parser.add_argument("--setting", help="M,k,alpha,seeds: report this one, choose nothing.")
    arguments = parser.parse_args()
    objective = "precision_at_4" if arguments.choose_by == "p4" else "mean_average_precision"
    collections = {short_name(spec.split("=")[0]): read(*spec.split("=", 1))
                   for spec in arguments.collections}  # fmt: skip
    for seed in map(int, arguments.seeds.split(",")):
        halves = {name: split(data, seed) for name, data in collections.items()}
        if arguments.setting:
            chosen = setting_from(arguments.setting)
            reported = [(name, part) for name in halves for part in (0, 1)]
        else:
            chosen = choose(halves, objective)
            reported = [(name, 1) for name in halves]
        print(f"seed {seed}: {chosen}", flush=True)
        for name, part in reported:
            figures = gains(halves[name][part], chosen)
            print(f"  {name[-22:]:<22} half {part}: {figures}", flush=True)
    for name, data in collections.items():
        print(f"whole {name[-22:]:<22}: {gains(data, chosen)}", flush=True)


def setting_from(text: str) -> Diffusion:
    shortlist, neighbours, alpha, seeds = text.split(",")
    return Diffusion(int(shortlist), int(neighbours), float(alpha), int(seeds))


def gains(data: LabelledVectors, diffusion: Diffusion) -> str:
    """Plain and diffused figures of one collection, by the product's code."""
    plain = leave_one_out_scores(data.vectors, data.labels, 4)
    diffused = leave_one_out_scores(data.vectors, data.labels, 4, diffusion=diffusion)
    return "  ".join(
        f"{short} {getattr(plain, figure):.4f} -> {getattr(diffused, figure):.4f} "
        f"({getattr(diffused, figure) - getattr(plain, figure):+.4f})"
        for figure, short in FIGURES.items()
    )


def choose(halves: dict, objective: str) -> Diffusion:
    """The grid's setting with the largest mean gain over the calibration halves."""
    mean_gain = dict.fromkeys(GRID, 0.0)
    for name, (calibration, _) in halves.items():
        plain = getattr(leave_one_out_scores(calibration.vectors, calibration.labels, 4), objective)
        for setting, scores in sweep(calibration).items():
            mean_gain[setting] += (scores[objective] - plain) / len(halves)
            print(f"  calibration {name[-22:]:<22} {setting}: {objective} "
                  f"{scores[objective] - plain:+.4f}", flush=True)  # fmt: skip
    return max(GRID, key=mean_gain.__getitem__)


def sweep(data: LabelledVectors) -> dict[Diffusion, dict[str, float]]:
    """Leave-one-out P@4 and mAP of every grid setting: one shortlist and Gram matrix per query
    shared by all settings, sparse graphs (the product builds dense ones, one per query)."""
    vectors = data.vectors.astype(np.float64)
    count = len(vectors)
    scores = {setting: np.empty((count, count)) for setting in GRID}
    for query in range(count):
        similarities = vectors @ vectors[query]
        similarities[query] = -np.inf
        longest = min(max(s.shortlist for s in GRID), count - 1)
        order = np.argsort(-similarities, kind="stable")[:longest]
        order = order[similarities[order] <= 1.0 - SAME_VECTOR_DISTANCE**2 / 2.0]
        gram = vectors[order] @ vectors[order].T
        graphs: dict[tuple[int, int], scipy.sparse.csr_matrix] = {}
        for setting in GRID:
            size = min(setting.shortlist, len(order))
            key = (size, setting.neighbours)
            if key not in graphs:
                graphs[key] = normalised_graph(gram[:size, :size], setting.neighbours)
            seeds = np.zeros(size)
            top = similarities[order[: setting.seeds]]
            seeds[: len(top)] = np.clip(top, 0.0, 1.0) ** DIFFUSION_GAMMA
            diffused = seeds.copy()
            for _ in range(DIFFUSION_STEPS):
                diffused = setting.alpha * (graphs[key] @ diffused) + seeds
            row = similarities - 10.0  # beyond the shortlist: after it, by similarity
            row[order[:size]] = diffused
            row[query] = -np.inf
            scores[setting][query] = row
    return {setting: ranked(matrix, data.labels) for setting, matrix in scores.items()}


def normalised_graph(gram: np.ndarray, neighbours: int) -> scipy.sparse.csr_matrix:
    size = len(gram)
    neighbours = min(neighbours, size - 1)
    others = gram.copy()
    np.fill_diagonal(others, -np.inf)
    nearest = np.argpartition(-others, neighbours - 1, axis=1)[:, :neighbours]
    rows = np.repeat(np.arange(size), neighbours)
    edges = np.clip(others[rows, nearest.ravel()], 0.0, 1.0) ** DIFFUSION_GAMMA
    weights = scipy.sparse.csr_matrix((edges, (rows, nearest.ravel())), shape=(size, size))
    weights = weights.minimum(weights.T)
    degrees = np.asarray(weights.sum(axis=1)).ravel()
    scale = scipy.sparse.diags(1.0 / np.sqrt(np.where(degrees > 0, degrees, 1.0)))
    return (scale @ weights @ scale).tocsr()


def ranked(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :-1]
    relevant = labels[order] == labels[:, np.newaxis]
    keep = relevant.any(axis=1)
    relevant = relevant[keep]
    hits = np.cumsum(relevant, axis=1)
    precision = np.where(relevant, hits / np.arange(1, relevant.shape[1] + 1), 0.0)
    average = precision.sum(axis=1) / np.maximum(relevant.sum(axis=1), 1)
    return {"precision_at_4": float(relevant[:, :4].mean()),
            "mean_average_precision": float(average.mean())}  # fmt: skip


if __name__ == "__main__":
    main()
