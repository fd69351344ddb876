"""Calibrate and check `foldervision duplicates` on edited flowers5 photos. Prints the figures.

Two disjoint halves of flowers5 are drawn (seeded). In each, ORIGINALS photos get two edited
copies each, of two different kinds from EDITS (resized, re-compressed, cropped a few percent,
turned a few degrees, brighter, lower contrast, a caption bar, saved in another format), and
DISTRACTORS other photos are added untouched (same classes: similar flowers that are *not*
duplicates). Each half is indexed with the real embedder into a temporary folder and
`close_pairs` (vectors, ratio test and the pixel recheck) is run at every threshold (pixel
signatures cached across thresholds); pair precision and recall follow with union-find. The
default is the threshold with the best F1 on the calibration half; the held-out half reports
precision and recall at it. `--no-recheck` scores the vectors and ratio test alone.

A true pair is two files made from the same original; a predicted pair is two files in the
same predicted group (so grouping by transitivity is scored too).

    python benchmarks/duplicates_quality.py [--originals 100] [--distractors 200] [--json]
        [--keep DIR [--reuse]] [--no-recheck]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from foldervision.images import list_image_files
from foldervision.retrieval import duplicates
from foldervision.retrieval.duplicates import DEFAULT_THRESHOLD, close_pairs, group_pairs
from foldervision.retrieval.embedder import mobilenetv2_embedder
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.settings import IndexSettings

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
THRESHOLDS = np.round(np.arange(0.20, 0.81, 0.02), 2)


def resized(image: Image.Image) -> Image.Image:
    return image.resize((max(16, image.width // 2), max(16, image.height // 2)), Image.BICUBIC)


def cropped(image: Image.Image) -> Image.Image:
    dx, dy = round(image.width * 0.04), round(image.height * 0.04)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def turned(image: Image.Image) -> Image.Image:
    return image.rotate(4, resample=Image.BICUBIC, expand=False, fillcolor=(0, 0, 0))


def brighter(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(1.3)


def lower_contrast(image: Image.Image) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(0.7)


def captioned(image: Image.Image) -> Image.Image:
    bar = max(12, image.height // 8)
    result = Image.new("RGB", (image.width, image.height + bar), (255, 255, 255))
    result.paste(image, (0, 0))
    ImageDraw.Draw(result).text((4, image.height + 2), "holiday 2019 - copy", fill=(0, 0, 0))
    return result


EDITS = {
    "resized": (resized, "jpg", 90),
    "recompressed": (lambda image: image, "jpg", 30),
    "cropped": (cropped, "jpg", 90),
    "turned": (turned, "jpg", 90),
    "brighter": (brighter, "jpg", 90),
    "lower_contrast": (lower_contrast, "jpg", 90),
    "captioned": (captioned, "jpg", 90),
    "png": (lambda image: image, "png", None),
    "webp": (lambda image: image, "webp", 80),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=SHARED_FLOWERS)
    parser.add_argument("--originals", type=int, default=100, help="Per half.")
    parser.add_argument("--distractors", type=int, default=200, help="Per half.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="Make the folders here and keep them.")
    parser.add_argument("--reuse", action="store_true", help="With --keep: use them again.")
    parser.add_argument("--no-recheck", action="store_true", help="Vectors and ratio test only.")
    arguments = parser.parse_args()
    if arguments.no_recheck:
        duplicates.RECHECK_FACTOR = 1.0
    files = list_image_files(arguments.folder)
    order = np.random.default_rng(0).permutation(len(files))
    per_half = arguments.originals + arguments.distractors
    embedder = mobilenetv2_embedder()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for half, name in enumerate(("calibration", "held_out")):
            chosen = [files[i] for i in order[half * per_half : (half + 1) * per_half]]
            folder = (arguments.keep or Path(scratch)) / name
            reuse = arguments.reuse and arguments.keep is not None and folder.exists()
            if folder.exists() and not reuse:
                shutil.rmtree(folder)
            truth, kinds = make_half(
                chosen[: arguments.originals], chosen[arguments.originals :], folder, reuse
            )
            results[name] = score_half(folder, embedder, truth, kinds)
    calibration = results["calibration"]["by_threshold"]
    best = max(calibration, key=lambda row: (row["f1"], -abs(row["threshold"] - 0.5)))
    held_out = {row["threshold"]: row for row in results["held_out"]["by_threshold"]}
    print("threshold  calibration P / R   held-out P / R")
    for row in calibration:
        other = held_out[row["threshold"]]
        print(f"{row['threshold']:.2f}       {row['precision']:.3f} / {row['recall']:.3f}"
              f"      {other['precision']:.3f} / {other['recall']:.3f}")  # fmt: skip
    default = held_out[round(float(DEFAULT_THRESHOLD), 2)]
    summary = {
        "best_calibration_threshold": best["threshold"],
        "default_threshold": DEFAULT_THRESHOLD,
        "held_out_precision": default["precision"],
        "held_out_recall": default["recall"],
        "held_out_true_pairs": results["held_out"]["true_pairs"],
        "held_out_recall_by_edit": results["held_out"]["recall_by_edit"],
        "held_out_false_pairs": default["false_pairs"],
    }
    for key, value in summary.items():
        print(f"{key:28s} {value}")
    if arguments.json:
        print(json.dumps(summary))


def make_half(
    originals: list[Path], distractors: list[Path], folder: Path, reuse: bool = False
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """Write originals, two edited copies of each, and distractors; return the true pairs.

    With `reuse` the files already there (made by the same seeded draw) are kept."""
    folder.mkdir(parents=True, exist_ok=reuse)
    random = np.random.default_rng(len(originals))
    truth: set[tuple[str, str]] = set()
    kinds: dict[tuple[str, str], str] = {}
    for number, source in enumerate(originals):
        image = None if reuse else Image.open(source).convert("RGB")
        names = [f"dup{number:04d}_original.jpg"]
        if image is not None:
            image.save(folder / names[0], quality=95)
        for kind in random.choice(list(EDITS), size=2, replace=False):
            edit, extension, quality = EDITS[kind]
            names.append(f"dup{number:04d}_{kind}.{extension}")
            options = {"quality": quality} if quality else {}
            if image is not None:
                edit(image).save(folder / names[-1], **options)
        for a, b in itertools.combinations(sorted(names), 2):
            truth.add((a, b))
            kinds[(a, b)] = next(n.split("_", 1)[1].rsplit(".", 1)[0] for n in (a, b)
                                 if "original" not in n)  # fmt: skip
    for number, source in enumerate(distractors):
        if not reuse:
            Image.open(source).convert("RGB").save(folder / f"other{number:04d}.jpg", quality=95)
    return truth, kinds


def score_half(folder: Path, embedder, truth: set, kinds: dict) -> dict:
    settings = IndexSettings(folder, index_path=folder.parent / f"{folder.name}.sqlite")
    with ImageIndex.open(settings, embedder.spec) as index:
        index.update(embedder)
        signatures: dict = {}
        pairs_at = {
            float(threshold): close_pairs(index, float(threshold), signatures)
            for threshold in THRESHOLDS
        }
        default_found = close_pairs(index, DEFAULT_THRESHOLD, signatures)
        paths = index.catalogue.paths_of(index.catalogue.ids())
    rows = []
    for threshold in THRESHOLDS:
        predicted = set()
        for group in group_pairs(pairs_at[float(threshold)]):
            names = sorted(paths[i] for i in group)
            predicted.update(itertools.combinations(names, 2))
        hits = len(predicted & truth)
        precision = hits / len(predicted) if predicted else 1.0
        recall = hits / len(truth)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        false_pairs = sorted(predicted - truth)[:10]
        rows.append({"threshold": float(threshold), "precision": round(precision, 4),
                     "recall": round(recall, 4), "f1": round(f1, 4),
                     "false_pairs": false_pairs})  # fmt: skip
    default_pairs = {tuple(sorted((paths[a], paths[b]))) for a, b, _ in default_found}
    by_edit: dict[str, list[bool]] = {}
    for pair in truth:
        if "original" in pair[0] or "original" in pair[1]:
            by_edit.setdefault(kinds[pair], []).append(pair in default_pairs)
    return {
        "by_threshold": rows,
        "true_pairs": len(truth),
        "recall_by_edit": {
            kind: round(float(np.mean(found)), 3) for kind, found in sorted(by_edit.items())
        },
    }


if __name__ == "__main__":
    main()
