"""Does scaled decoding cost retrieval quality? Leave-one-out P@4 and mAP, whole vs scaled decode.

The same labelled files (one subfolder per class) are embedded twice by the product's embedder,
once per decoding ("full": every pixel, then resized; "scaled": JPEG DCT scaling or a box
reduction to no less than twice the network's side, then resized), and scored with the
product's `leave_one_out_scores`. The guard the default rests on: |delta| <= 0.005 for both.
Also printed: how far the vectors moved, and how many top-4 lists changed.

Make phone-size stand-ins first (see benchmarks/upscaled_copies.py), for example:
      python benchmarks/upscaled_copies.py /tmp/phone-s1 --size 4032x3024 --quality 92 \\
          --grain 4 --turned-every 4 --count 300 --seed 1
Run:  python benchmarks/decoding_quality.py /tmp/phone-s1 [--image-size 224]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from foldervision.datasets import scan_labelled_folder
from foldervision.images import DECODINGS
from foldervision.retrieval.embedder import DEFAULT_IMAGE_SIZE, mobilenetv2_embedder
from foldervision.retrieval.evaluate import leave_one_out_scores, squared_euclidean

TOP_K = 4
GUARD = 0.005
"""Largest |delta| of P@4 or mAP that lets scaled decoding be the default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="A labelled folder (one subfolder per class).")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    arguments = parser.parse_args()
    labelled = scan_labelled_folder(arguments.folder)
    print(f"{arguments.folder}: {len(labelled.paths)} images, {len(labelled.class_names)} "
          f"classes, {arguments.image_size} px; leave-one-out P@{TOP_K} and mAP")  # fmt: skip
    vectors = {
        decoding: embedded(labelled.paths, arguments.image_size, decoding) for decoding in DECODINGS
    }
    scores = {}
    for decoding, values in vectors.items():
        scores[decoding] = leave_one_out_scores(values, labelled.labels, TOP_K)
        print(f"  {decoding:<7} P@{TOP_K} {scores[decoding].precision_at_k:.4f}  "
              f"mAP {scores[decoding].mean_average_precision:.4f}")  # fmt: skip
    full, scaled = scores["full"], scores["scaled"]
    precision_delta = scaled.precision_at_k - full.precision_at_k
    map_delta = scaled.mean_average_precision - full.mean_average_precision
    distances = np.linalg.norm(vectors["scaled"] - vectors["full"], axis=1)
    changed = changed_top_k(vectors["scaled"], vectors["full"])
    verdict = "PASS" if max(abs(precision_delta), abs(map_delta)) <= GUARD else "FAIL"
    print(f"  scaled - full: P@{TOP_K} {precision_delta:+.4f}  mAP {map_delta:+.4f}  "
          f"(guard |delta| <= {GUARD}: {verdict})")  # fmt: skip
    print(f"  vector distance scaled vs full: median {np.median(distances):.4f}, "
          f"max {distances.max():.4f}; top-{TOP_K} lists changed: {changed:.1%}")  # fmt: skip


def embedded(paths: list[Path], image_size: int, decoding: str) -> np.ndarray:
    """The product's vectors for every file, in order; a file that fails to decode is fatal."""
    embedder = mobilenetv2_embedder(image_size=image_size, decoding=decoding)
    batches = []
    for batch in embedder.embed_files(paths):
        if batch.skipped:
            raise SystemExit(f"{batch.skipped[0].path}: {batch.skipped[0].reason}")
        batches.append(batch.vectors)
    return np.concatenate(batches)


def changed_top_k(vectors: np.ndarray, reference: np.ndarray) -> float:
    """Share of queries whose set of k nearest other images differs between the two."""
    return float(np.mean([set(a) != set(b) for a, b in zip(nearest(vectors), nearest(reference))]))


def nearest(vectors: np.ndarray) -> np.ndarray:
    distances = squared_euclidean(vectors, vectors)
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1, kind="stable")[:, :TOP_K]


if __name__ == "__main__":
    main()
