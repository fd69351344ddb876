"""Calibrate and check `foldervision duplicates` on edited flowers5 photos. Prints the figures.

Two disjoint halves of flowers5 are drawn (seeded). In each, ORIGINALS photos get COPIES edited
copies each, of different kinds drawn from benchmarks/duplicate_edits.py: light edits (resized,
re-compressed, cropped 4%, turned 4 degrees, brighter, lower contrast, a caption bar, PNG,
WebP) and hard ones (mirrored, turned 90/180/270 degrees, cropped to 72%, a thumbnail, a phone
screenshot with margins and a status bar, JPEG quality 12, grey, watermarked, and a mix: turned,
cropped and shrunk). DISTRACTORS other photos are added untouched (same classes: similar
flowers that are *not* duplicates). Each half is indexed with the real embedder and every
proposed pair is checked once (`search_pairs(check_all=True)`), so any settings can be scored.

Every threshold is chosen on the calibration half: the settings with the highest pair recall
whose pair precision there is at least TARGET_PRECISION; then, those fixed, the proposals worth
checking (`check_distance`, `check_similarity`) that send the fewest pairs to the check while
keeping that recall and precision. The held-out half is then scored with
the library's defaults (which must be those settings: the script says when they are not), by
edit kind. A true pair is two files made from the same photo; a predicted pair is two files in
the same predicted group (so grouping by transitivity is scored too). flowers5 holds a few
photos twice (different crops of one picture); KNOWN_SOURCE_DUPLICATES lists the ones seen,
checked by eye, and they count as the same photo.

    python benchmarks/duplicates_quality.py [--originals 200] [--distractors 300] [--copies 3]
        [--keep DIR [--reuse]] [--json]
    python benchmarks/duplicates_quality.py --scale 100000 --keep DIR [--reuse]

--scale N times `find_duplicates` on N images (flowers5 photos and edited copies of them until
there are N; the folder is made once and kept with --keep): wall time and peak memory of the
proposals and of the checks, with their counts (the checks grow with the proposals, which grow
with N, never with N^2), the seconds of the proposing stages, the pictures read and the
keypoint searches. --picture-mb, --keypoint-mb and --exact-signatures change the caches and
the signature search, to compare them in one session.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from duplicate_edits import ALL_EDITS, HARD_EDITS, LIGHT_EDITS
from PIL import Image

from foldervision.images import list_image_files
from foldervision.retrieval import duplicates
from foldervision.retrieval.duplicates import DuplicateSettings, group_pairs, search_pairs
from foldervision.retrieval.embedder import mobilenetv2_embedder
from foldervision.retrieval.index import ImageIndex
from foldervision.retrieval.settings import IndexSettings

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
TARGET_PRECISION = 0.99
GRID = {
    "threshold": [0.9, 1.0, 1.1, 1.2],
    "sure_distance": [0.0, 0.2, 0.25, 0.3, 0.35],
    "min_inliers": [4, 5, 6, 8, 10, 12, 15],
    "min_inlier_ratio": [0.0, 0.2, 0.25, 0.3, 0.35, 0.4],
    "min_correlation": [0.5, 0.6, 0.7, 0.8, 0.9],
}
CHECK_GRID = {
    "check_distance": [round(0.5 + 0.025 * step, 3) for step in range(17)],
    "check_similarity": [0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.97, 0.99, 1.01],
}
"""1.01: no pair is checked for its signatures alone."""
UNFILTERED = {"check_distance": 10.0, "check_similarity": 10.0}
"""Every proposal within the threshold is checked (the first step of the calibration)."""
KNOWN_SOURCE_DUPLICATES: list[tuple[str, str]] = []
"""Pairs of flowers5 files (relative paths) that are one photo, found by this benchmark's false
pairs and confirmed by eye."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=SHARED_FLOWERS)
    parser.add_argument("--originals", type=int, default=200, help="Per half.")
    parser.add_argument("--distractors", type=int, default=300, help="Per half.")
    parser.add_argument("--copies", type=int, default=3, help="Edited copies per original.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="Make the folders here and keep them.")
    parser.add_argument("--reuse", action="store_true", help="With --keep: use them again.")
    parser.add_argument("--scale", type=int, help="Time find_duplicates on this many images.")
    parser.add_argument("--false-pairs", type=int, default=10, help="How many to list.")
    parser.add_argument("--picture-mb", type=int, help="With --scale: the picture cache, MB.")
    parser.add_argument("--keypoint-mb", type=int, help="With --scale: the keypoint cache, MB.")
    parser.add_argument("--exact-signatures", action="store_true",
                        help="With --scale: exact signature search at any size.")  # fmt: skip
    arguments = parser.parse_args()
    if arguments.scale:
        return run_scale(arguments)
    files = list_image_files(arguments.folder)
    order = np.random.default_rng(0).permutation(len(files))
    per_half = arguments.originals + arguments.distractors
    embedder = mobilenetv2_embedder()
    searches = {}
    with tempfile.TemporaryDirectory() as scratch:
        for half, name in enumerate(("calibration", "held_out")):
            chosen = [files[i] for i in order[half * per_half : (half + 1) * per_half]]
            folder = (arguments.keep or Path(scratch)) / name
            reuse = arguments.reuse and arguments.keep is not None and folder.exists()
            if folder.exists() and not reuse:
                shutil.rmtree(folder)
            originals, distractors = chosen[: arguments.originals], chosen[arguments.originals :]
            manifest = make_half(
                originals, distractors, folder, arguments.folder, arguments.copies, half, reuse
            )
            searches[name] = evaluate_half(folder, embedder, manifest)
    report(searches, arguments)


def make_half(
    originals: list[Path], distractors: list[Path], folder: Path, source_folder: Path,
    copies: int, seed: int, reuse: bool = False,
) -> dict[str, dict[str, str]]:  # fmt: skip
    """Write originals, their edited copies and distractors; return {file: {source, kind}}.

    With `reuse` the files already there, and their manifest beside the folder, are used."""
    manifest_path = folder.parent / f"{folder.name}.manifest.json"
    if reuse:
        return json.loads(manifest_path.read_text())
    folder.mkdir(parents=True)
    random = np.random.default_rng(1000 + seed)
    manifest: dict[str, dict[str, str]] = {}
    for number, source in enumerate(originals):
        image = Image.open(source).convert("RGB")
        relative_source = source.relative_to(source_folder).as_posix()
        name = f"dup{number:04d}_original.jpg"
        manifest[name] = {"source": relative_source, "kind": "original"}
        image.save(folder / name, quality=95)
        for kind in random.choice(list(ALL_EDITS), size=copies, replace=False):
            edit = ALL_EDITS[kind]
            name = f"dup{number:04d}_{kind}.{edit.extension}"
            manifest[name] = {"source": relative_source, "kind": str(kind)}
            edit.save(image, random, folder / name)
    for number, source in enumerate(distractors):
        name = f"other{number:04d}.jpg"
        manifest[name] = {"source": source.relative_to(source_folder).as_posix(),
                          "kind": "distractor"}  # fmt: skip
        Image.open(source).convert("RGB").save(folder / name, quality=95)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def evaluate_half(folder: Path, embedder, manifest: dict) -> dict:
    """Index the half, propose and check every pair once; keep what scoring needs."""
    loosest = DuplicateSettings(threshold=max(GRID["threshold"]), **UNFILTERED)
    settings = IndexSettings(folder, index_path=folder.parent / f"{folder.name}.sqlite")
    with ImageIndex.open(settings, embedder.spec) as index:
        index.update(embedder)
        search = search_pairs(index, loosest, check_all=True)
        paths = index.catalogue.paths_of(index.catalogue.ids())
    photo = photo_ids(manifest)
    names = sorted(paths.values())
    truth = {(a, b) for a, b in itertools.combinations(names, 2) if photo[a] == photo[b]}
    return {"pairs": search.pairs, "paths": paths, "truth": truth, "manifest": manifest}


def photo_ids(manifest: dict) -> dict[str, str]:
    """File -> the photo it shows: its source, with known duplicate sources joined."""
    same = {}
    for a, b in KNOWN_SOURCE_DUPLICATES:
        same[max(a, b)] = min(a, b)
    return {name: same.get(entry["source"], entry["source"]) for name, entry in manifest.items()}


def predicted_pairs(half: dict, settings: DuplicateSettings) -> set[tuple[str, str]]:
    accepted = [(p.first, p.second) for p in half["pairs"] if settings.accepts(p)]
    predicted = set()
    for group in group_pairs(accepted):
        predicted.update(itertools.combinations(sorted(half["paths"][i] for i in group), 2))
    return predicted


def score(half: dict, settings: DuplicateSettings) -> dict:
    predicted = predicted_pairs(half, settings)
    hits = len(predicted & half["truth"])
    return {
        "precision": round(hits / len(predicted), 4) if predicted else 1.0,
        "recall": round(hits / len(half["truth"]), 4),
        "false_pairs": sorted(predicted - half["truth"]),
        "predicted": predicted,
    }


def by_kind(half: dict, predicted: set) -> dict[str, dict[str, float]]:
    """Per edit kind: recall of (original, copy) pairs; precision of pairs with such a copy."""
    kinds = {name: entry["kind"] for name, entry in half["manifest"].items()}
    rows = {}
    for kind in ALL_EDITS:
        truth = {pair for pair in half["truth"] if
                 sorted(kinds[name] for name in pair) == sorted(["original", kind])}  # fmt: skip
        involved = {pair for pair in predicted if kind in (kinds[pair[0]], kinds[pair[1]])}
        if not truth:
            continue
        rows[kind] = {
            "recall": round(len(truth & predicted) / len(truth), 3),
            "precision": round(len(involved & half["truth"]) / len(involved), 3)
            if involved
            else 1.0,
            "pairs": len(truth),
        }
    return rows


def summary_of(half: dict, predicted: set, kinds: list[str]) -> dict[str, float]:
    """Precision and recall over the pairs that involve a copy of one of `kinds`."""
    names = {name for name, entry in half["manifest"].items() if entry["kind"] in kinds}
    truth = {pair for pair in half["truth"] if names & set(pair)}
    involved = {pair for pair in predicted if names & set(pair)}
    return {
        "precision": round(len(involved & half["truth"]) / len(involved), 4) if involved else 1.0,
        "recall": round(len(truth & predicted) / len(truth), 4) if truth else 1.0,
        "pairs": len(truth),
    }


def false_links(half: dict, settings: DuplicateSettings) -> list[str]:
    """The accepted pairs of different photos, with their evidence (the groups' bad joins)."""
    photo = photo_ids(half["manifest"])
    lines = []
    for pair in half["pairs"]:
        first, second = half["paths"][pair.first], half["paths"][pair.second]
        if settings.accepts(pair) and photo[first] != photo[second]:
            lines.append(f"{first} {second} distance {pair.distance:.3f} similarity "
                         f"{pair.similarity:.2f} inliers {pair.inliers}/{pair.matches} correlation "
                         f"{pair.correlation:.2f}")  # fmt: skip
    return lines


def calibrate(half: dict) -> tuple[DuplicateSettings, dict]:
    """The settings with the best recall at TARGET_PRECISION or more (ties go to the strictest),
    then the fewest checks that keep that recall and precision."""
    chosen, result = calibrate_check(half)
    best_key, best = None, (chosen, result)
    for values in itertools.product(*CHECK_GRID.values()):
        settings = replace(chosen, **dict(zip(CHECK_GRID, values)))
        score_now = score(half, settings)
        if score_now["recall"] < result["recall"] or score_now["precision"] < TARGET_PRECISION:
            continue
        key = (-checks(half, settings), settings.check_distance, -settings.check_similarity)
        if best_key is None or key > best_key:
            best_key, best = key, (settings, score_now)
    return best


def checks(half: dict, settings: DuplicateSettings) -> int:
    """Proposals the settings send to the check (before any is skipped as already joined)."""
    return sum(1 for pair in half["pairs"] if settings.worth_checking(pair))


def calibrate_check(half: dict) -> tuple[DuplicateSettings, dict]:
    """The settings with the best recall at TARGET_PRECISION or more; ties go to the strictest."""
    best, best_key, best_score = None, None, None
    for values in itertools.product(*GRID.values()):
        settings = DuplicateSettings(**dict(zip(GRID, values)), **UNFILTERED)
        result = score(half, settings)
        if result["precision"] < TARGET_PRECISION:
            continue
        key = (result["recall"], result["precision"], settings.min_correlation,
               settings.min_inlier_ratio, settings.min_inliers, -settings.threshold,
               -settings.sure_distance)  # fmt: skip
        if best_key is None or key > best_key:
            best, best_key, best_score = settings, key, result
    if best is None:
        raise SystemExit(f"no settings reach precision {TARGET_PRECISION} on the calibration half")
    return best, best_score


def report(searches: dict, arguments: argparse.Namespace) -> None:
    chosen, calibration = calibrate(searches["calibration"])
    defaults = DuplicateSettings()
    held_out = searches["held_out"]
    result = score(held_out, defaults)
    kinds = by_kind(held_out, result["predicted"])
    print(f"calibration choice: {chosen}  (precision {calibration['precision']}, "
          f"recall {calibration['recall']})")  # fmt: skip
    if chosen != defaults:
        print(f"NOTE: the library's defaults differ: {defaults}")
    print(f"held-out at the defaults: precision {result['precision']}  recall {result['recall']}")
    print("edit kind         pairs  precision  recall")
    for kind, row in kinds.items():
        print(f"{kind:16s}  {row['pairs']:5d}  {row['precision']:9.3f}  {row['recall']:6.3f}")
    groups = {"light": summary_of(held_out, result["predicted"], list(LIGHT_EDITS)),
              "hard": summary_of(held_out, result["predicted"], list(HARD_EDITS))}  # fmt: skip
    for name, row in groups.items():
        print(f"{name} edits: precision {row['precision']}  recall {row['recall']}  "
              f"({row['pairs']} true pairs)")  # fmt: skip
    print(f"proposals on the held-out half: {len(held_out['pairs'])} for "
          f"{len(held_out['paths'])} images; {checks(held_out, defaults)} worth checking at "
          f"the defaults ({checks(held_out, replace(defaults, **UNFILTERED))} without the "
          "filter)")  # fmt: skip
    for name, half, settings in (("held-out", held_out, defaults),
                                 ("calibration", searches["calibration"], chosen)):  # fmt: skip
        print(f"false links ({name}):")
        for line in false_links(half, settings)[: arguments.false_pairs]:
            print("  ", line)
    if arguments.json:
        print(json.dumps({
            "calibration_choice": chosen.__dict__, "defaults": defaults.__dict__,
            "held_out_precision": result["precision"], "held_out_recall": result["recall"],
            "held_out_by_kind": kinds, "held_out_light_hard": groups,
        }))  # fmt: skip


# --------------------------------------------------------------------------------------------
# --scale N: time and memory of find_duplicates on N images.


def make_scale_folder(folder: Path, source_folder: Path, count: int) -> None:
    """Up to half of `count` flowers5 photos (all 4,317 from 8,634 on), then edited copies of
    them (random kinds, cycling over the photos) until there are `count` files. Each file has
    its own seeded draw, so the folder is the same however many processes make it."""
    sources = list_image_files(source_folder)[: max(1, count // 2)]
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder, sources, number) for number in range(count)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_make_scale_file, jobs, chunksize=256))


def _make_scale_file(job: tuple[Path, list[Path], int]) -> None:
    folder, sources, number = job
    image = Image.open(sources[number % len(sources)]).convert("RGB")
    if number < len(sources):
        image.save(folder / f"{number:06d}.jpg", quality=95)
        return
    random = np.random.default_rng([7, number])
    kind = str(random.choice(list(ALL_EDITS)))
    edit = ALL_EDITS[kind]
    edit.save(image, random, folder / f"{number:06d}_{kind}.{edit.extension}")


def run_scale(arguments: argparse.Namespace) -> None:
    if arguments.keep is None:
        raise SystemExit("--scale needs --keep DIR (the folder is large; make it once)")
    folder = arguments.keep / f"scale_{arguments.scale}"
    if not (arguments.reuse and folder.exists()):
        shutil.rmtree(folder, ignore_errors=True)
        make_scale_folder(folder, arguments.folder, arguments.scale)
    embedder = mobilenetv2_embedder()
    index_settings = IndexSettings(folder, index_path=folder.parent / f"{folder.name}.sqlite")
    stages = time_stages(arguments)
    with ImageIndex.open(index_settings, embedder.spec) as index:
        index.update(embedder)
        settings = DuplicateSettings()
        started = time.perf_counter()
        proposals = duplicates.candidate_pairs(index, settings.threshold)
        proposed = time.perf_counter()
        worth = [pair for pair in proposals if settings.worth_checking(pair)]
        checked, compared = duplicates.check_pairs(
            index, proposals, settings.worth_checking, settings=settings
        )
        finished = time.perf_counter()
        accepted = [(p.first, p.second) for p in checked if settings.accepts(p)]
        paths = index.catalogue.paths_of(index.catalogue.ids())
    sources = len(list_image_files(arguments.folder)[: max(1, arguments.scale // 2)])
    quality = scale_quality(group_pairs(accepted), paths, sources)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "images": arguments.scale, "proposals": len(proposals), "worth_checking": len(worth),
        "compared": compared,
        "images_in_pairs_worth_checking": len({i for p in worth for i in (p.first, p.second)}),
        "groups": len(group_pairs(accepted)),
        "propose_seconds": round(proposed - started, 1),
        "check_seconds": round(finished - proposed, 1),
        "peak_memory_mb": round(peak_mb), "python": sys.version.split()[0], **quality,
        **{name: round(value, 1) if isinstance(value, float) else value
           for name, value in stages.items()},
    }))  # fmt: skip


def time_stages(arguments: argparse.Namespace) -> dict[str, float | int]:
    """Apply the --scale options, and count (filled in as the run goes) the seconds of each
    stage of proposing, the pictures read while checking and the keypoint searches (ORB runs,
    a mirror image's included)."""
    from foldervision.retrieval import verify

    if arguments.picture_mb is not None:
        duplicates.PICTURE_CACHE_BYTES = arguments.picture_mb * 10**6
    if arguments.keypoint_mb is not None:
        duplicates.KEYPOINT_CACHE_BYTES = arguments.keypoint_mb * 10**6
    if arguments.exact_signatures:
        duplicates.SIGNATURE_LISTS_FROM = sys.maxsize
    stages: dict[str, float | int] = {"pictures_read": 0, "keypoint_searches": 0}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                key = f"{name}_seconds"
                stages[key] = stages.get(key, 0.0) + time.perf_counter() - started

        return run

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            stages[name] += 1
            return function(*args, **kwargs)

        return run

    for stage in ("vector_candidates", "read_signatures", "signature_candidates"):
        setattr(duplicates, stage, timed(stage, getattr(duplicates, stage)))
    verify.read_picture = counted("pictures_read", verify.read_picture)
    verify._features = counted("keypoint_searches", verify._features)
    return stages


def scale_quality(groups: list[list[int]], paths: dict[int, str], sources: int) -> dict:
    """Pair precision and recall of the groups: file NUMBER shows photo NUMBER % sources (the
    few photos flowers5 holds twice count as different, so precision is a lower bound)."""

    def source(file_id: int) -> int:
        return int(paths[file_id][:6]) % sources

    def pairs(count: int) -> int:
        return count * (count - 1) // 2

    hits = predicted = 0
    for members in groups:
        predicted += pairs(len(members))
        counts = np.bincount([source(file_id) for file_id in members])
        hits += sum(pairs(int(count)) for count in counts)
    truth = np.bincount([source(file_id) for file_id in paths])
    true_pairs = sum(pairs(int(count)) for count in truth)
    return {
        "pair_precision": round(hits / max(predicted, 1), 4),
        "pair_recall": round(hits / max(true_pairs, 1), 4),
        "true_pairs": true_pairs,
    }


if __name__ == "__main__":
    main()
