"""Retrieval with pretrained backbones' vectors side by side, from indexes already built.

The study behind `--model mobilenetv2+efficientnet-lite0+efficientnet-lite2` (issue 23): each
collection indexed separately by each backbone (`foldervision index FOLDER --index I --model
M`, default settings), the stored vectors of the same files made unit length, concatenated
and made unit length again (the cosine is then the mean of the backbones' cosines), and
scored leave-one-out (P@1, P@4, mAP) against MobileNetV2 alone; each combination also "square
root, centred on the collection's mean" (the whole-collection form of `--centre`,
`retrieval_alternatives.py --study normalisation`). The product's own combined vectors differ
slightly (one decoding at the largest input size, resized in the graph for the others); its
figures come from `foldervision evaluate-retrieval FOLDER --model A+B+C`.

Run:  python benchmarks/side_by_side.py FOLDER=MOBILENETV2_INDEX=LITE0_INDEX=LITE2_INDEX ...
      python benchmarks/side_by_side.py FOLDER=I1=I2=I3 ... --names a,b,c --combinations "a;a+b;b+c"
(the first combination is the one the others are compared with).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from graph_diffusion import figures
from query_expansion import opened_index

from foldervision.datasets import scan_labelled_folder

BACKBONES = "mobilenetv2,lite0,lite2"
COMBINATIONS = "mobilenetv2;lite0;lite2;mobilenetv2+lite0;mobilenetv2+lite2;mobilenetv2+lite0+lite2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", nargs="+", help="FOLDER=INDEX=INDEX=...")
    parser.add_argument("--names", default=BACKBONES, help="One name per index, in order.")
    parser.add_argument("--combinations", default=COMBINATIONS, help="';'-separated, '+' joins.")
    parser.add_argument("--plain", action="store_true", help="Leave out the centred variants.")
    arguments = parser.parse_args()
    names = arguments.names.split(",")
    combinations = [combination.split("+") for combination in arguments.combinations.split(";")]
    for spec in arguments.collections:
        folder, *index_paths = spec.split("=")
        if len(index_paths) != len(names):
            raise SystemExit(f"{spec}: give FOLDER and one index per name ({', '.join(names)}).")
        stored = {name: read(folder, path) for name, path in zip(names, index_paths)}
        labelled = scan_labelled_folder(Path(folder))
        label_of = dict(zip(map(labelled.relative, labelled.paths), labelled.labels.tolist()))
        files = sorted(set(label_of).intersection(*map(set, stored.values())))
        labels = np.array([label_of[file] for file in files])
        print(f"{folder}: {len(files)} images (changes against {'+'.join(combinations[0])})")
        baseline = None
        for parts_named in combinations:
            parts = [unit(np.stack([stored[name][file] for file in files])) for name in parts_named]
            vectors = unit(np.hstack(parts))
            variants = [("", vectors)]
            if not arguments.plain:
                variants.append((", centred", centred(vectors)))
            for label, transformed in variants:
                result = leave_one_out(transformed, labels)
                baseline = baseline or result
                cells = "  ".join(f"{key} {value:.4f} ({value - baseline[key]:+.4f})"
                                  for key, value in result.items())  # fmt: skip
                print(f"  {'+'.join(parts_named) + label:<34} {cells}", flush=True)


def read(folder: str, index_path: str) -> dict[str, np.ndarray]:
    """{file relative to the folder: its stored vector}."""
    with opened_index(folder, index_path) as image_index:
        indexed = image_index.vectors()
        files = [image_index.relative(path) for path in indexed.paths]
        return dict(zip(files, indexed.vectors.astype(np.float64)))


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def centred(vectors: np.ndarray) -> np.ndarray:
    rooted = unit(np.sqrt(np.clip(vectors, 0.0, None)))
    return unit(rooted - rooted.mean(axis=0))


def leave_one_out(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    return figures(similarities, labels, labels, leave_out=True)


if __name__ == "__main__":
    main()
