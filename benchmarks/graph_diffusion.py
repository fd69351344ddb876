"""Would diffusion over the whole collection's k-NN graph help where `--diffuse` did not?

`--diffuse` builds a small graph per query from its 200 nearest photos. Here the graph joins
every stored photo to its k most similar others (mutual pairs, weight similarity^3,
symmetrically normalised, as `diffusion.normalised_graph`), once per collection, and a query
is its s best similarities^3 spread over that graph by solving (I - alpha S) f = y exactly
(Iscen et al., CVPR 2017, without truncation). Reads the vectors an index already holds.

Two ways to score, both against the plain ranking of the same queries:
  split  each class's images dealt into two halves (seeded): the first half queries, the graph
         and the ranking hold the second half only: a new photo searched in a collection.
  loo    every photo queries the whole collection, its own node in the graph, itself left out
         of its ranking: what `search --queries DIR --database DIR` would do.

Run:  python benchmarks/graph_diffusion.py FOLDER=INDEX [FOLDER=INDEX ...]
          [--protocol split|loo] [--seed 0] [--settings 10,5,0.8 15,5,0.8]
(each index made first with `foldervision evaluate-retrieval FOLDER --index INDEX`).
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.linalg
from diffusion import normalised_graph
from query_expansion import read, short_name

from foldervision.retrieval.reranking import DIFFUSION_GAMMA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", nargs="+", help="FOLDER=INDEX of a labelled folder.")
    parser.add_argument("--protocol", choices=("split", "loo"), default="split")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split's halves.")
    parser.add_argument(
        "--settings", nargs="+", default=["10,5,0.8", "10,3,0.8", "10,5,0.7", "15,5,0.8"],
        help="neighbours,seeds,alpha of each setting to score.",
    )  # fmt: skip
    arguments = parser.parse_args()
    settings = [parse_setting(text) for text in arguments.settings]
    for spec in arguments.collections:
        data = read(*spec.split("=", 1))
        queries, database, leave_out = protocol_rows(
            data.labels, arguments.protocol, arguments.seed
        )
        vectors = data.vectors.astype(np.float64)
        similarities = vectors[queries] @ vectors[database].T
        if leave_out:
            np.fill_diagonal(similarities, -np.inf)
        labels = (data.labels[queries], data.labels[database])
        plain = figures(similarities, *labels, leave_out)
        print(f"{short_name(spec.split('=')[0])}: {len(queries)} queries, {len(database)} "
              f"stored; plain {format_figures(plain)}", flush=True)  # fmt: skip
        gram = vectors[database] @ vectors[database].T
        for neighbours, seeds, alpha in settings:
            graph = normalised_graph(gram, neighbours).toarray()
            scores = diffused(similarities, graph, seeds, alpha)
            if leave_out:
                np.fill_diagonal(scores, -np.inf)
            gains = {name: value - plain[name] for name, value in
                     figures(scores, *labels, leave_out).items()}  # fmt: skip
            print(f"  k={neighbours} s={seeds} alpha={alpha}: {format_figures(gains, '+')}",
                  flush=True)  # fmt: skip


def parse_setting(text: str) -> tuple[int, int, float]:
    neighbours, seeds, alpha = text.split(",")
    return int(neighbours), int(seeds), float(alpha)


def protocol_rows(
    labels: np.ndarray, protocol: str, seed: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Query rows, stored rows, and whether a query is one of the stored rows (left out)."""
    if protocol == "loo":
        everything = np.arange(len(labels))
        return everything, everything, True
    generator = np.random.default_rng(seed)
    queries, database = [], []
    for label in np.unique(labels):
        rows = generator.permutation(np.flatnonzero(labels == label))
        queries.extend(rows[0::2])
        database.extend(rows[1::2])
    return np.array(queries), np.array(database), False


def diffused(similarities: np.ndarray, graph: np.ndarray, seeds: int, alpha: float) -> np.ndarray:
    """Each query's scores over the stored photos: f = (I - alpha S)^-1 y, y its `seeds` best
    similarities^gamma (every query solved at once; I - alpha S is positive definite)."""
    best = np.argpartition(-similarities, seeds - 1, axis=1)[:, :seeds]
    starts = np.zeros_like(similarities)
    rows = np.arange(len(similarities))[:, np.newaxis]
    starts[rows, best] = np.clip(similarities[rows, best], 0.0, 1.0) ** DIFFUSION_GAMMA
    system = np.eye(len(graph)) - alpha * graph
    return scipy.linalg.solve(system, starts.T, assume_a="pos").T


def figures(
    scores: np.ndarray, query_labels: np.ndarray, stored_labels: np.ndarray, leave_out: bool
) -> dict[str, float]:
    """P@1, P@4 and mAP of rankings by descending score (a left-out query ranks last, dropped)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    if leave_out:
        order = order[:, :-1]
    relevant = stored_labels[order] == query_labels[:, np.newaxis]
    hits = np.cumsum(relevant, axis=1)
    precision = np.where(relevant, hits / np.arange(1, relevant.shape[1] + 1), 0.0)
    average = precision.sum(axis=1) / np.maximum(relevant.sum(axis=1), 1)
    return {"P@1": float(relevant[:, 0].mean()), "P@4": float(relevant[:, :4].mean()),
            "mAP": float(average.mean())}  # fmt: skip


def format_figures(values: dict[str, float], sign: str = "") -> str:
    return "  ".join(f"{name} {value:{sign}.4f}" for name, value in values.items())


if __name__ == "__main__":
    main()
