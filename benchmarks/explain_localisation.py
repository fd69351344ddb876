"""Do the heatmaps of `predict --explain` point at the evidence? (issue 22)

A run's validation photos (never trained on) are shrunk to a little under a quarter of the
model's input and pasted into one quadrant of a plain grey canvas, the quadrants taken in turn
and the spot inside the quadrant at random. Whatever the model sees of its class is inside that
quadrant, so a map that points at the evidence peaks there. Printed per map: how many peaks
fall in the photo's quadrant (chance: a quarter) and the mean share of the map's mass inside it.

The maps: the product's (`GradCam`, the LayerCAM weighting), and the same code with Grad-CAM's
own weighting (each channel by its gradient's mean over the map) as the baseline, measured in
the same run; for a probe ensemble also each half alone (the trained model's map and the
probe's, both of the class the ensemble predicts).

    python benchmarks/photo_training.py --train-per-class 64 --test-per-class 50 \\
        --uneven 2:10 --seeds 80,81,82,83,84 --out /tmp/runs/run
    python benchmarks/explain_localisation.py --data ../shared/data/flowers5 \\
        /tmp/runs/run-seed80 /tmp/runs/run-seed81

`--data` is the class folder the runs' split.json paths are relative to (photo_training.py
copies flowers5 into a temporary folder, whose paths are flowers5's own).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CANVAS_GREY = 128


def pasted_in_quadrants(
    paths: list[Path], side: int, seed: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Each photo shrunk to side/2 - side/8 and pasted into quadrant i % 4 of a grey canvas."""
    from PIL import Image

    generator = np.random.default_rng(seed)
    half, photo_side = side // 2, side // 2 - side // 8
    canvases, quadrants = [], []
    for index, path in enumerate(paths):
        quadrant = (index // 2 % 2, index % 2)
        with Image.open(path) as image:
            photo = np.asarray(image.convert("RGB").resize((photo_side, photo_side)))
        top, left = (int(generator.integers(0, half - photo_side + 1)) for _ in range(2))
        top, left = top + quadrant[0] * half, left + quadrant[1] * half
        canvas = np.full((side, side, 3), CANVAS_GREY, np.uint8)
        canvas[top : top + photo_side, left : left + photo_side] = photo
        canvases.append(canvas)
        quadrants.append(quadrant)
    return np.stack(canvases), quadrants


def localisation(maps: np.ndarray, quadrants: list[tuple[int, int]]) -> dict[str, float]:
    """Peaks inside the photo's quadrant (count) and mean mass share inside it."""
    half = maps.shape[1] // 2
    peaks, shares = 0, []
    for heatmap, (row, column) in zip(maps, quadrants):
        peak_row, peak_column = np.unravel_index(heatmap.argmax(), heatmap.shape)
        peaks += (peak_row // half, peak_column // half) == (row, column)
        inside = heatmap[row * half : (row + 1) * half, column * half : (column + 1) * half]
        shares.append(inside.sum() / max(float(heatmap.sum()), 1e-12))
    return {"peaks_inside": int(peaks), "mass_share": round(float(np.mean(shares)), 3)}


def grad_cam_weighting(feature_map, gradients):
    """Grad-CAM proper (Selvaraju et al.): channels weighted by their gradient's spatial mean."""
    import tensorflow as tf

    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))


def maps_of(model, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The product's maps, and each half's for an ensemble, in batches of EXPLAIN_BATCH."""
    import tensorflow as tf

    from foldervision import explain

    cam = explain.GradCam(model)
    found: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(pixels), explain.EXPLAIN_BATCH):
        batch = pixels[start : start + explain.EXPLAIN_BATCH]
        found.setdefault("product", []).append(np.stack([item.heatmap for item in cam(batch)]))
        if cam.ensemble is None:
            continue
        inputs = tf.convert_to_tensor(batch, tf.float32)
        predicted = tf.constant(np.asarray(cam.ensemble(inputs)).argmax(axis=1))
        found.setdefault("trained half", []).append(cam.trained_maps(inputs, predicted)[1])
        found.setdefault("probe half", []).append(cam.probe(inputs, predicted))
    return {name: np.concatenate(parts) for name, parts in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--count", type=int, default=40, help="validation photos per run")
    parser.add_argument("--seed", type=int, default=0, help="where in its quadrant each goes")
    args = parser.parse_args()

    from foldervision import explain
    from foldervision.models.saving import load_classifier

    product_weighting = explain.class_activation
    for run in args.runs:
        split = json.loads((run / "split.json").read_text())
        paths = [args.data / path for path, _ in split["validation"][: args.count]]
        model, preprocessor = load_classifier(run)
        side = preprocessor.image_size
        pixels, quadrants = pasted_in_quadrants(paths, side, args.seed)
        figures: dict[str, object] = {"run": str(run), "photos": len(paths), "side": side}
        for weighting_name, weighting in (
            ("layercam", product_weighting),
            ("gradcam", grad_cam_weighting),
        ):
            explain.class_activation = weighting  # the baseline, through the same code
            for map_name, maps in maps_of(model, pixels).items():
                figures[f"{map_name} {weighting_name}"] = localisation(maps, quadrants)
        explain.class_activation = product_weighting
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
