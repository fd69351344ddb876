"""Which image features retrieve best? Leave-one-out P@4 and mAP on flowers5, per variant.

For each input size the network runs once (twice with --flip) and every variant is derived
from the same forward pass: average vs GeM pooling of the last feature map, horizontal-flip
averaging, concatenating block 16's pooled output, PCA-whitening fitted on the database itself,
and alpha query expansion. The variant the tool uses by default is marked, and its vectors are
checked against `foldervision.retrieval` on a few images, so the figure is the product's.

With several sizes it also scores multi-scale GeM: the mean of the unit vectors at every size
(e.g. --sizes 224,158: scales 1 and 1/sqrt(2)), renormalised.

Run:  python benchmarks/retrieval_quality.py [--sizes 128,160,224] [--flip] [--per-class N]
The default (sizes 128 and 224, no flip, every image) takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.datasets import scan_labelled_folder
from foldervision.images import iter_images
from foldervision.retrieval.embedder import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_POOLING,
    GEM_POWER,
    mobilenetv2_embedder,
)
from foldervision.retrieval.evaluate import leave_one_out_scores

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"

TOP_K = 4
BATCH_SIZE = 64
SHALLOW_LAYER = "block_16_project_BN"
EXPANSION_NEIGHBOURS = 3
EXPANSION_ALPHA = 3.0
CHECKED_IMAGES = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--sizes", default=f"128,{DEFAULT_IMAGE_SIZE}")
    parser.add_argument("--flip", action="store_true", help="Also try flip averaging (2x time).")
    parser.add_argument("--per-class", type=int, default=0, help="Images per class (0: all).")
    arguments = parser.parse_args()
    labelled = scan_labelled_folder(arguments.folder)
    if arguments.per_class:
        keep = np.concatenate([np.flatnonzero(labelled.labels == label)[: arguments.per_class]
                               for label in range(len(labelled.class_names))])  # fmt: skip
        labelled = labelled.subset(keep)
    print(f"{len(labelled.paths)} images, {len(labelled.class_names)} classes; "
          f"leave-one-out P@{TOP_K} and mAP")  # fmt: skip
    gem_at: dict[int, np.ndarray] = {}
    for size in (int(size) for size in arguments.sizes.split(",")):
        features = pooled_features(labelled.paths, size, arguments.flip)
        gem_at[size] = unit(features["gem"])
        for name, vectors, queries in variants(features):
            scores = leave_one_out_scores(vectors, labelled.labels, TOP_K, queries)
            marker = "  <- default" if (size, name) == (DEFAULT_IMAGE_SIZE, DEFAULT_POOLING) else ""
            print(f"{size:4d} px  {name:<28} P@{TOP_K} {scores.precision_at_k:.4f}  "
                  f"mAP {scores.mean_average_precision:.4f}{marker}", flush=True)  # fmt: skip
        if size == DEFAULT_IMAGE_SIZE:
            check_against_product(labelled.paths[:CHECKED_IMAGES], features["gem"])
    if len(gem_at) > 1:  # multi-scale: the mean of each size's unit GeM vector, renormalised
        scores = leave_one_out_scores(unit(sum(gem_at.values())), labelled.labels, TOP_K)
        sizes = "+".join(str(size) for size in gem_at)
        print(f"{sizes} px  {'gem multi-scale':<28} P@{TOP_K} {scores.precision_at_k:.4f}  "
              f"mAP {scores.mean_average_precision:.4f}")  # fmt: skip


def pooled_features(paths: list[Path], size: int, flip: bool) -> dict[str, np.ndarray]:
    """One pass over the images: unnormalised pooled features per pooling (and flipped)."""
    forward = feature_function(size, flip)
    start = time.perf_counter()
    batches: dict[str, list[np.ndarray]] = {}
    pixels: list[np.ndarray] = []
    for position, (path, image, skip) in enumerate(iter_images(paths, size), start=1):
        if skip is not None:
            raise SystemExit(f"{path}: {skip.reason}")
        pixels.append(image)
        if len(pixels) == BATCH_SIZE or position == len(paths):
            for name, values in forward(np.stack(pixels)).items():
                batches.setdefault(name, []).append(values.numpy())
            pixels = []
    print(f"{size:4d} px  features in {time.perf_counter() - start:.0f} s", flush=True)
    return {name: np.concatenate(values) for name, values in batches.items()}


def feature_function(size: int, flip: bool) -> Callable[[np.ndarray], dict[str, Any]]:
    import keras
    import tensorflow as tf

    from foldervision.models.mobilenetv2_weights import build_mobilenetv2_backbone

    backbone = build_mobilenetv2_backbone(size)
    layers = [backbone.get_layer(SHALLOW_LAYER).output, backbone.get_layer("pooled").input]
    feature_model = keras.Model(backbone.input, layers)

    def pooled(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        shallow, last = feature_model(pixels, training=False)
        clamped = tf.maximum(last, 1e-6)
        return {
            "avg": tf.reduce_mean(last, axis=[1, 2]),
            "gem": tf.reduce_mean(clamped**GEM_POWER, axis=[1, 2]) ** (1.0 / GEM_POWER),
            "shallow": tf.reduce_mean(shallow, axis=[1, 2]),
        }

    @tf.function
    def forward(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.cast(pixels, tf.float32)
        features = pooled(pixels)
        if flip:
            flipped = pooled(tf.reverse(pixels, axis=[2]))
            features.update({f"{name} flipped": value for name, value in flipped.items()})
        return features

    return forward


def variants(
    features: dict[str, np.ndarray],
) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, database vectors, query vectors or None) for every combination we compare."""
    for pooling in ("avg", "gem"):
        yield pooling, unit(features[pooling]), None
        if f"{pooling} flipped" in features:
            flipped = unit(features[pooling] + features[f"{pooling} flipped"])
            yield f"{pooling} + flip", flipped, None
    gem = unit(features["gem"])
    yield f"gem ++ {SHALLOW_LAYER}", unit(np.hstack([gem, unit(features["shallow"])])), None
    yield "gem + PCA-whitening", pca_whiten(gem), None
    yield "gem + PCA-whitening to 256", pca_whiten(gem, 256), None
    yield f"gem + alpha-QE (n={EXPANSION_NEIGHBOURS})", gem, expand_queries(gem)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def pca_whiten(vectors: np.ndarray, dimensions: int | None = None) -> np.ndarray:
    """Whitening learnt on the database itself (no extra data), then renormalised."""
    centred = vectors - vectors.mean(axis=0)
    _, singular_values, components = np.linalg.svd(centred, full_matrices=False)
    dimensions = dimensions or len(singular_values)
    scale = singular_values[:dimensions] / np.sqrt(len(vectors)) + 1e-6
    return unit(centred @ (components[:dimensions].T / scale))


def expand_queries(vectors: np.ndarray) -> np.ndarray:
    """alpha-QE: each query plus its nearest other images weighted by similarity^alpha."""
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)  # leave-one-out: the query is not in the database
    neighbours = np.argsort(-similarities, axis=1)[:, :EXPANSION_NEIGHBOURS]
    weights = np.take_along_axis(similarities, neighbours, axis=1).clip(0) ** EXPANSION_ALPHA
    return unit(vectors + (vectors[neighbours] * weights[..., np.newaxis]).sum(axis=1))


def check_against_product(paths: list[Path], gem_features: np.ndarray) -> None:
    """The default variant here must be exactly what `foldervision index` stores."""
    embedder = mobilenetv2_embedder(image_size=DEFAULT_IMAGE_SIZE)
    product = np.concatenate([batch.vectors for batch in embedder.embed_files(paths)])
    difference = float(np.abs(product - unit(gem_features[: len(paths)])).max())
    print(f"default variant vs foldervision.retrieval on {len(paths)} images: "
          f"largest difference {difference:.1e}")  # fmt: skip
    if difference > 1e-4:
        raise SystemExit("the benchmark's default variant differs from the product's vectors")


if __name__ == "__main__":
    main()
