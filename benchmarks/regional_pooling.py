"""Would regional pooling (R-MAC style) find better neighbours than GeM over the whole map?

The default vector pools MobileNetV2's last feature map (7 x 7 at 224 px, 5 x 5 at the second
scale, 158 px) with GeM over the whole map, per scale, and averages the scales' unit vectors.
R-MAC (Tolias et al., ICLR 2016) pools square regions at several levels instead: level l has
l x l regions of side 2 min(H, W) / (l + 1), spread evenly (level 1: the whole square map); each
region is pooled (GeM here, p = 3, as the default), made unit length, and the regions summed.
Without the PCA-whitening learned on another collection that R-MAC adds (nothing to learn it
from offline), this is "regional GeM". Each variant is taken per scale and the scales combined
as the product does, from the same forward pass, so the default here is the product's vector.

Scored as the normalisation study is (`retrieval_alternatives.py`): split (each class halved by
a seed, the first half querying the second) and leave-one-out, P@1, P@4, mAP.

Run:  python benchmarks/regional_pooling.py FOLDER [FOLDER ...] [--levels 2 3] [--seeds 3]
          [--cache /tmp/q/maps]     (feature maps kept as float16 .npy, reused on a rerun)
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from graph_diffusion import figures, protocol_rows

from foldervision.datasets import scan_labelled_folder
from foldervision.images import iter_images
from foldervision.retrieval.embedder import GEM_POWER, mobilenetv2_embedder

BATCH_SIZE = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="Labelled folders.")
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None)
    arguments = parser.parse_args()
    embedder = mobilenetv2_embedder()
    feature_model = None
    for folder in arguments.folders:
        labelled = scan_labelled_folder(folder)
        cached = cache_paths(arguments.cache, folder, embedder.spec.scale_sides())
        if cached and all(path.is_file() for path in cached):
            maps = [np.load(path) for path in cached]
        else:
            if feature_model is None:
                feature_model = embedder._build_feature_model()
            maps = feature_maps(feature_model, labelled.paths, embedder.spec)
            for path, scale_maps in zip(cached or [], maps):
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, scale_maps)
        variants = {"gem (default)": combined(maps, 1)}
        variants |= {f"regional, levels 1-{top}": combined(maps, top) for top in arguments.levels}
        report(folder, labelled.labels, variants, arguments.seeds)


def cache_paths(cache: Path | None, folder: Path, sides: tuple[int, ...]) -> list[Path] | None:
    if cache is None:
        return None
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return [cache / f"{folder.name}-{key}-{side}px.npy" for side in sides]


def feature_maps(feature_model, paths: list[Path], spec) -> list[np.ndarray]:
    """Each scale's (N, H, W, C) float16 feature maps, decoded exactly as the index decodes."""
    per_scale: list[list[np.ndarray]] = []
    batch: list[np.ndarray] = []
    decoded = iter_images(paths, spec.image_size, spec.color_mode, decoding=spec.decoding)

    def flush() -> None:
        outputs = feature_model(np.stack(batch).astype(np.float32), training=False)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        while len(per_scale) < len(outputs):
            per_scale.append([])
        for scale, output in enumerate(outputs):
            per_scale[scale].append(np.asarray(output).astype(np.float16))
        batch.clear()

    for path, pixels, skip in decoded:
        if skip is not None:
            raise SystemExit(f"{path}: {skip.reason}; a labelled folder here must decode whole.")
        batch.append(pixels)
        if len(batch) == BATCH_SIZE:
            flush()
    if batch:
        flush()
    return [np.concatenate(scale) for scale in per_scale]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def regions(height: int, width: int, level: int) -> list[tuple[int, int, int]]:
    """(top, left, side) of level `level`'s squares: level x level, evenly spread."""
    side = max(1, round(2 * min(height, width) / (level + 1))) if level > 1 else min(height, width)
    tops = np.unique(np.round(np.linspace(0, height - side, level)).astype(int))
    lefts = np.unique(np.round(np.linspace(0, width - side, level)).astype(int))
    return [(int(top), int(left), side) for top in tops for left in lefts]


def regional_gem(maps: np.ndarray, top_level: int) -> np.ndarray:
    """(N, C) unit vectors: the unit GeM vectors of every region of levels 1..top_level, summed."""
    total = np.zeros((len(maps), maps.shape[-1]))
    _, height, width, _ = maps.shape
    for start in range(0, len(maps), 256):
        cubed = np.maximum(maps[start : start + 256].astype(np.float64), 1e-6) ** GEM_POWER
        for level in range(1, top_level + 1):
            for top, left, side in regions(height, width, level):
                window = cubed[:, top : top + side, left : left + side]
                pooled = window.mean(axis=(1, 2)) ** (1.0 / GEM_POWER)
                total[start : start + 256] += unit(pooled)
    return unit(total)


def combined(maps: list[np.ndarray], top_level: int) -> np.ndarray:
    """The scales' unit vectors summed and made unit length, as the product combines scales."""
    return unit(sum(regional_gem(scale_maps, top_level) for scale_maps in maps))


def report(folder: Path, labels: np.ndarray, variants: dict[str, np.ndarray], seeds: int) -> None:
    print(f"{folder} ({len(labels)} images): P@1/P@4/mAP, each variant's gain over the default")
    protocols = [("split", seed) for seed in range(seeds)] + [("loo", 0)]
    for protocol, seed in protocols:
        queries, stored, leave_out = protocol_rows(labels, protocol, seed)
        cells = []
        plain = None
        for name, vectors in variants.items():
            similarities = vectors[queries] @ vectors[stored].T
            if leave_out:
                np.fill_diagonal(similarities, -np.inf)
            result = figures(similarities, labels[queries], labels[stored], leave_out)
            if plain is None:
                plain = result
                cells.append(f"{name} {'/'.join(f'{v:.4f}' for v in result.values())}")
            else:
                gains = "/".join(f"{result[key] - plain[key]:+.4f}" for key in plain)
                cells.append(f"{name} {gains}")
        label = f"split seed {seed}" if protocol == "split" else "loo"
        print(f"  {label:<12} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
