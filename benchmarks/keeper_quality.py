"""Does the suggested keeper (retrieval.keeper) keep the original over its edited copies?

Each flowers5 photo (its file as it is) gets copies of the kinds that change the pixel count:
a caption bar, a phone screenshot (zoomed 1.25x between bars), a half-size copy, a 40%
thumbnail, a 4% crop, and enlargements (1.5x and 2x bicubic, 2x Lanczos, JPEG quality 90).
The original is put at the longer path ("originals/from the camera/...") so that a tie the
size rule leaves falls to the copy: only rule 1 can keep the original here.

Two seeded halves of the folder: on the calibration half, MAX_EXTRA_DETAIL is chosen as the
value that best separates `extra_detail` of enlargements (copy against the original) from that
of originals (original against its smaller copies); the held-out half reports, with that value,
how often the original is kept against each kind of copy alone and against all of them at once,
and, for comparison, by the headers alone (canvas pixels: the rule before photo boxes).

Run:  python benchmarks/keeper_quality.py [--per-half 150] [--seed 0] [--json]
      [--calibration-only]  (scores the calibration half: for choosing the band constants)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from duplicate_edits import captioned, cropped, screenshot, thumbnail
from PIL import Image

import foldervision.retrieval.keeper as keeper
from foldervision.images import list_image_files

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
ORIGINAL_FOLDER = "originals/from the camera"


def enlarged(factor: float, resample: Image.Resampling):
    def edit(image: Image.Image, random: np.random.Generator) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, resample)

    return edit


def half_size(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.BICUBIC)


COPIES = {
    "captioned": (captioned, "jpg"),
    "screenshot": (screenshot, "png"),
    "half_size": (half_size, "jpg"),
    "thumbnail": (thumbnail, "jpg"),
    "cropped": (cropped, "jpg"),
    "enlarged_1.5": (enlarged(1.5, Image.BICUBIC), "jpg"),
    "enlarged_2": (enlarged(2.0, Image.BICUBIC), "jpg"),
    "enlarged_2_lanczos": (enlarged(2.0, Image.LANCZOS), "jpg"),
}
ENLARGEMENTS = ("screenshot", "enlarged_1.5", "enlarged_2", "enlarged_2_lanczos")
SMALLER = ("half_size", "thumbnail")


def make_half(files: list[Path], folder: Path, seed: int) -> list[dict[str, str]]:
    """Each original and its copies, as {kind: relative path}, "original" included."""
    random = np.random.default_rng(seed)
    groups = []
    (folder / ORIGINAL_FOLDER).mkdir(parents=True)
    (folder / "c").mkdir()
    for number, source in enumerate(files):
        original = f"{ORIGINAL_FOLDER}/{number}{source.suffix.lower()}"
        shutil.copyfile(source, folder / original)
        group = {"original": original}
        with Image.open(source) as image:
            image = image.convert("RGB")
            for kind, (edit, extension) in COPIES.items():
                group[kind] = f"c/{number}-{kind}.{extension}"
                options = {"quality": 90} if extension == "jpg" else {}
                edit(image, random).save(folder / group[kind], **options)
        groups.append(group)
    return groups


def photos_of(folder: Path, group: dict[str, str]) -> dict:
    return {kind: keeper._photo_pixels(folder, keeper.read_facts(folder, path))
            for kind, path in group.items()}  # fmt: skip


def calibrate(folder: Path, groups: list[dict[str, str]]) -> tuple[float, dict]:
    enlargements, originals = [], []
    for group in groups:
        photos = photos_of(folder, group)
        for kind in ENLARGEMENTS:
            extra = keeper.extra_detail(photos[kind], photos["original"])
            enlargements.append(np.inf if extra is None else extra)
        for kind in SMALLER:
            extra = keeper.extra_detail(photos["original"], photos[kind])
            originals.append(np.inf if extra is None else extra)
    values = np.sort(np.concatenate([enlargements, originals]))
    values = values[np.isfinite(values)]
    candidates = (values[:-1] + values[1:]) / 2
    enlargements, originals = np.asarray(enlargements), np.asarray(originals)
    errors = [(enlargements >= c).sum() + (originals < c).sum() for c in candidates]
    best = float(candidates[int(np.argmin(errors))])
    spread = {
        "enlargements_p50_p90": np.percentile(enlargements, [50, 90]).round(3).tolist(),
        "originals_p10_p50": np.percentile(originals, [10, 50]).round(3).tolist(),
        "calibration_errors": int(min(errors)),
        "calibration_comparisons": len(enlargements) + len(originals),
    }
    return round(best, 2), spread


def evaluate(folder: Path, groups: list[dict[str, str]]) -> dict:
    kept = {kind: 0 for kind in COPIES}
    canvas = {kind: 0 for kind in COPIES}
    whole = 0
    wrong: list[str] = []
    for group in groups:
        for kind in COPIES:
            pair = [group["original"], group[kind]]
            chosen, why = keeper.choose_keeper(folder, pair)
            kept[kind] += chosen == group["original"]
            headers = [keeper.read_facts(folder, path) for path in pair]
            canvas[kind] += keeper.choose_from_facts(headers)[0] == group["original"]
            if chosen != group["original"] and len(wrong) < 8:
                wrong.append(f"{group[kind]}: {why}")
        chosen, why = keeper.choose_keeper(folder, list(group.values()))
        whole += chosen == group["original"]
        if chosen != group["original"] and len(wrong) < 12:
            wrong.append(f"group of {group['original']} kept {chosen}: {why}")
    count = len(groups)
    return {
        "original_kept_against": {kind: round(hits / count, 3) for kind, hits in kept.items()},
        "by_canvas_pixels_headers_only": {
            kind: round(hits / count, 3) for kind, hits in canvas.items()
        },
        "original_kept_in_whole_group": round(whole / count, 3),
        "groups": count,
        "some_wrong": wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=SHARED_FLOWERS)
    parser.add_argument("--per-half", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--calibration-only",
        action="store_true",
        help="Score the calibration half instead (to set the band constants by hand).",
    )
    arguments = parser.parse_args()
    files = list_image_files(arguments.folder)
    order = np.random.default_rng(arguments.seed).permutation(len(files))
    result: dict = {"seed": arguments.seed, "shipped_max_extra_detail": keeper.MAX_EXTRA_DETAIL}
    with tempfile.TemporaryDirectory() as scratch:
        halves = {}
        names = ("calibration",) if arguments.calibration_only else ("calibration", "held_out")
        for half, name in enumerate(names):
            chosen = order[half * arguments.per_half : (half + 1) * arguments.per_half]
            folder = Path(scratch) / name
            halves[name] = (folder, make_half([files[i] for i in chosen], folder, half))
        chosen_value, spread = calibrate(*halves["calibration"])
        result["calibrated_max_extra_detail"] = chosen_value
        result["calibration"] = spread
        keeper.MAX_EXTRA_DETAIL = chosen_value
        if arguments.calibration_only:
            result["calibration_half"] = evaluate(*halves["calibration"])
        else:
            result["held_out"] = evaluate(*halves["held_out"])
    if arguments.json:
        print(json.dumps(result, indent=1))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
