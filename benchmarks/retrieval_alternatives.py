"""Levers tried for issue 23 and not built: database-side augmentation, the ImageNet head,
and normalising the stored vectors.

Reads the vectors an index already holds (no embedding). Three studies:

1. `--study augmentation`: database-side augmentation (DBA: each stored vector replaced by
   itself plus its n nearest stored vectors weighted by similarity^alpha, unit length), alone
   and followed by query expansion in the augmented space (DBA+QE), against alpha-QE alone.
   Leave-one-out is exact for DBA: the query is taken out of its neighbours' averages (their
   next neighbour stands in). For each seed, each collection is split in two halves
   (`query_expansion.split`); n and alpha are chosen on the calibration halves of all
   collections together (largest mean gain in P@4, or in mAP) and the gain is printed on the
   other halves.
2. `--study head`: the ImageNet classifier of MobileNetV2 applied to the stored GeM vectors:
   its logits' direction, centred logits, the vector with the logits appended (weights 0.5-2),
   and the square root of its softmax at three temperatures; whole collections, leave-one-out.
3. `--study normalisation`: every vector (query and stored) transformed before the cosine:
   its square root (power normalisation; GeM vectors are not negative), the stored vectors'
   mean subtracted (centring, as SimpleShot's CL2N), both, and half the mean subtracted; each
   unit length again. Scored as `graph_diffusion.py` scores: for each seed, half of each class
   queries the other half (the mean from the stored half), then the whole collection
   leave-one-out (the mean of all).

Run:  python benchmarks/retrieval_alternatives.py FOLDER=INDEX [FOLDER=INDEX ...]
          [--study augmentation|head|normalisation] [--seeds 3]
(each index made first with `foldervision evaluate-retrieval FOLDER --index INDEX --scales 1`,
as in docs/benchmarks.md: the figures there were taken on one-scale vectors).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from graph_diffusion import figures, protocol_rows
from query_expansion import read, short_name, split

METHODS = ("qe", "dba", "dba+qe")
NEIGHBOURS = (1, 2, 3, 5, 8)
ALPHAS = (1.0, 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", nargs="+", help="FOLDER=INDEX of a labelled folder.")
    parser.add_argument(
        "--study", choices=("augmentation", "head", "normalisation"), default="augmentation"
    )
    parser.add_argument("--seeds", type=int, default=3)
    arguments = parser.parse_args()
    collections = {short_name(spec.split("=")[0]): read(*spec.split("=", 1))
                   for spec in arguments.collections}  # fmt: skip
    if arguments.study == "head":
        study_head(collections)
    elif arguments.study == "normalisation":
        study_normalisation(collections, arguments.seeds)
    else:
        study_augmentation(collections, arguments.seeds)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def weights(similarities: np.ndarray, alpha: float) -> np.ndarray:
    return np.clip(similarities, 0.0, 1.0) ** alpha


def nearest_others(similarities: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `count` most similar other rows and their similarities, best first."""
    others = similarities.copy()
    np.fill_diagonal(others, -np.inf)
    order = np.argsort(-others, axis=1)[:, :count]
    return order, np.take_along_axis(others, order, axis=1)


def similarities_after(vectors: np.ndarray, method: str, n: int, alpha: float) -> np.ndarray:
    """(N, N) similarity of query i (row) to stored image j as `method` ranks them."""
    plain = vectors @ vectors.T
    nearest, near = nearest_others(plain, n + 1)
    if method == "qe":
        expanded = unit(vectors + np.einsum("jm,jmd->jd", weights(near[:, :n], alpha),
                                            vectors[nearest[:, :n]]))  # fmt: skip
        return expanded @ vectors.T
    augmented = unit(vectors + np.einsum("jm,jmd->jd", weights(near[:, :n], alpha),
                                         vectors[nearest[:, :n]]))  # fmt: skip
    ranked = vectors @ augmented.T
    for stored, position in itertools.product(range(len(vectors)), range(n)):
        query = nearest[stored, position]  # query's vector is in stored's average: take it out
        kept = [column for column in range(n + 1) if column != position]
        without = (
            vectors[stored] + weights(near[stored, kept], alpha) @ vectors[nearest[stored, kept]]
        )
        ranked[query, stored] = vectors[query] @ (without / np.linalg.norm(without))
    if method == "dba":
        return ranked
    top, top_similarities = nearest_others(ranked, n)
    expanded = unit(vectors + np.einsum("im,imd->id", weights(top_similarities, alpha),
                                        augmented[top]))  # fmt: skip
    return expanded @ augmented.T  # the second search's augmented vectors are not corrected


def scores(similarities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out P@1, P@4 and mAP of a (N, N) similarity matrix."""
    similarities = similarities.copy()
    np.fill_diagonal(similarities, -np.inf)
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :-1]
    relevant = labels[order] == labels[:, np.newaxis]
    hits = np.cumsum(relevant, axis=1)
    precision_at_hits = np.where(relevant, hits / np.arange(1, relevant.shape[1] + 1), 0.0)
    average_precision = precision_at_hits.sum(axis=1) / np.maximum(relevant.sum(axis=1), 1)
    return {"P@1": relevant[:, 0].mean(), "P@4": relevant[:, :4].mean(),
            "mAP": average_precision.mean()}  # fmt: skip


def ranked(half, setting: tuple) -> dict[str, float]:
    return scores(similarities_after(half.vectors.astype(np.float64), *setting), half.labels)


def study_augmentation(collections: dict, seeds: int) -> None:
    grid = [(method, n, alpha) for method in METHODS for n in NEIGHBOURS for alpha in ALPHAS]
    for seed in range(seeds):
        halves = {name: split(data, seed) for name, data in collections.items()}
        baseline = {(name, part): scores(half.vectors @ half.vectors.T, half.labels)
                    for name, pair in halves.items() for part, half in enumerate(pair)}  # fmt: skip
        calibration = {(setting, name): ranked(pair[0], setting)
                       for setting in grid for name, pair in halves.items()}  # fmt: skip
        for method, objective in itertools.product(METHODS, ("P@4", "mAP")):
            gains = {
                setting: np.mean([calibration[(setting, name)][objective]
                                  - baseline[(name, 0)][objective] for name in halves])
                for setting in grid if setting[0] == method
            }  # fmt: skip
            chosen = max(gains, key=gains.__getitem__)
            line = f"seed {seed} {method:<7} chosen by {objective}: n={chosen[1]} a={chosen[2]:g}"
            for name, pair in halves.items():
                after = ranked(pair[1], chosen)
                gain = {figure: after[figure] - baseline[(name, 1)][figure] for figure in after}
                line += f" | {name[-22:]} " + " ".join(f"{k} {v:+.4f}" for k, v in gain.items())
            print(line, flush=True)


def study_head(collections: dict) -> None:
    from foldervision.models.mobilenetv2_weights import build_mobilenetv2_backbone

    head = build_mobilenetv2_backbone(224, "auto", include_top=True).get_layer("predictions")
    kernel, bias = (np.asarray(value, np.float64) for value in head.get_weights())
    for name, data in collections.items():
        vectors = data.vectors.astype(np.float64)
        logits = vectors @ kernel
        variants = {
            "GeM vector": vectors,
            "logits": logits,
            "logits centred": logits - logits.mean(0),
        }
        for weight in (0.5, 1.0, 2.0):
            variants[f"vector + logits x{weight:g}"] = np.hstack([vectors, weight * unit(logits)])
        for temperature in (10.0, 30.0, 100.0):
            scaled = temperature * logits + bias
            probabilities = np.exp(scaled - scaled.max(axis=1, keepdims=True))
            variants[f"sqrt softmax T={temperature:g}"] = np.sqrt(probabilities)
        for label, variant in variants.items():
            result = scores(unit(variant) @ unit(variant).T, data.labels)
            print(
                f"{name[-22:]:<22} {label:<22} "
                + "  ".join(f"{k} {v:.4f}" for k, v in result.items())
            )


NORMALISATIONS = {
    "square root": lambda vectors, stored: unit(np.sqrt(np.clip(vectors, 0.0, None))),
    "centred": lambda vectors, stored: unit(vectors - vectors[stored].mean(axis=0)),
    "half centred": lambda vectors, stored: unit(vectors - 0.5 * vectors[stored].mean(axis=0)),
    "square root, centred": lambda vectors, stored: NORMALISATIONS["centred"](
        NORMALISATIONS["square root"](vectors, stored), stored
    ),
}


def study_normalisation(collections: dict, seeds: int) -> None:
    protocols = [("split", seed) for seed in range(seeds)] + [("loo", 0)]
    for protocol, seed in protocols:
        print(f"{protocol}" + (f" seed {seed}" if protocol == "split" else ""), flush=True)
        for name, data in collections.items():
            queries, stored, leave_out = protocol_rows(data.labels, protocol, seed)
            vectors = data.vectors.astype(np.float64)
            rows = (queries, stored, leave_out)
            plain = normalised_figures(vectors, data.labels, *rows)
            cells = [f"plain {'/'.join(f'{value:.4f}' for value in plain.values())}"]
            for label, normalise in NORMALISATIONS.items():
                result = normalised_figures(normalise(vectors, stored), data.labels, *rows)
                gains = "/".join(f"{result[key] - plain[key]:+.4f}" for key in plain)
                cells.append(f"{label} {gains}")
            for shortlist, local in ((200, False), (200, True), (400, True)):
                result = rescored_figures(vectors, data.labels, *rows, shortlist, local)
                gains = "/".join(f"{result[key] - plain[key]:+.4f}" for key in plain)
                mean = f"the {shortlist} nearest's mean" if local else "the stored mean"
                cells.append(f"{shortlist} nearest re-scored, {mean} {gains}")
            print(f"  {name[-22:]:<22} (P@1/P@4/mAP) " + " | ".join(cells), flush=True)


def normalised_figures(
    vectors: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    stored: np.ndarray,
    leave_out: bool,
) -> dict[str, float]:
    similarities = vectors[queries] @ vectors[stored].T
    if leave_out:
        np.fill_diagonal(similarities, -np.inf)
    return figures(similarities, labels[queries], labels[stored], leave_out)


def rescored_figures(
    vectors: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    stored: np.ndarray,
    leave_out: bool,
    shortlist: int,
    local: bool,
) -> dict[str, float]:
    """ "Square root, centred" as a re-ranker: only each query's `shortlist` nearest by the plain
    cosine re-scored (the rest after them, in plain order), centred on the stored vectors' mean
    or on the mean of that query's shortlist (`local`, which needs no collection-wide state)."""
    similarities = vectors[queries] @ vectors[stored].T
    if leave_out:
        np.fill_diagonal(similarities, -np.inf)
    rooted = NORMALISATIONS["square root"](vectors, stored)
    scores = similarities - 10.0
    nearest = np.argsort(-similarities, axis=1, kind="stable")[:, :shortlist]
    collection_mean = rooted[stored].mean(axis=0)
    for row, query in enumerate(queries):
        candidates = rooted[stored[nearest[row]]]
        mean = candidates.mean(axis=0) if local else collection_mean
        query_vector = unit((rooted[query] - mean)[np.newaxis])[0]
        scores[row, nearest[row]] = unit(candidates - mean) @ query_vector
    if leave_out:
        np.fill_diagonal(scores, -np.inf)
    return figures(scores, labels[queries], labels[stored], leave_out)


if __name__ == "__main__":
    main()
