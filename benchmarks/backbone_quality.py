"""Which pretrained backbone finds the right neighbours? Side by side on labelled collections.

Each labelled folder (one subfolder per class) is indexed by the product itself with each
`--model` (default settings otherwise: GeM pooling, the backbone's native size, ONNX), into
OUT/<folder>.<model>.sqlite (kept, so a second run only re-scores). Printed per collection:
- the whole collection's leave-one-out P@1, P@4, mAP and N-S score, for each model;
- over `--seeds` seeded splits into two halves (stratified by class, or by classes where a
  class is too small: the split of benchmarks/query_expansion.py), each half a leave-one-out
  collection of its own: each figure's mean and spread, and the paired difference of every
  model against the first one on the very same halves (mean, min..max, halves won).
- the indexing time (wall, indicative on a shared machine; time speed with
  benchmarks/embedding_speed.py --variants fp32,lite0,lite2).
A model may carry its scales: `mobilenetv2@1` (one scale), `mobilenetv2@1+0.7071` (multi-scale,
`--scales 1,0.7071`); a model without them gets its default scales.

Run:  python benchmarks/backbone_quality.py ../shared/data/flowers5 \\
          /tmp/q/collections/photo-edits /tmp/q/collections/mnist-digits --out /tmp/q/backbones \\
          [--models mobilenetv2,efficientnet-lite0,efficientnet-lite2] [--seeds 5]
      python benchmarks/backbone_quality.py FOLDERS --out /tmp/q/scales \\
          --models mobilenetv2@1,mobilenetv2@1+0.7071
(the collections from benchmarks/labelled_collections.py). Nothing is written in the folders.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from query_expansion import FIGURES, SHORT, figures, read, scores, split

from foldervision.retrieval.evaluate import leave_one_out_scores
from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings, parse_scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="Labelled folders (one subfolder per class).")
    parser.add_argument("--out", required=True, help="Where the indexes go (outside the repo).")
    parser.add_argument("--models", default="mobilenetv2,efficientnet-lite0,efficientnet-lite2")
    parser.add_argument("--seeds", type=int, default=5)
    arguments = parser.parse_args()
    models = arguments.models.split(",")
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in map(Path, arguments.folders):
        collection = collection_name(folder)
        indexes = {model: out / f"{collection}.{model}.sqlite" for model in models}
        seconds = {model: index_folder(folder, model, indexes[model]) for model in models}
        data = {model: read(str(folder), str(indexes[model])) for model in models}
        first = data[models[0]]
        print(f"\n{collection}: {len(first.labels)} images, {len(first.class_names)} classes")
        for model in models:
            whole = leave_one_out_scores(data[model].vectors, data[model].labels, 4)
            took = f"indexed in {seconds[model]:.0f} s" if seconds[model] else "index reused"
            print(f"  {model:<19} whole: {figures(whole)}   ({took})")
        halves = {model: [] for model in models}
        for seed in range(arguments.seeds):
            for model in models:
                halves[model] += [scores(half, None) for half in split(data[model], seed)]
        print(f"  halves ({2 * arguments.seeds}: {arguments.seeds} seeds x 2), mean (min..max):")
        for model in models:
            values = {f: [getattr(half, f) for half in halves[model]] for f in FIGURES}
            print(f"  {model:<19} " + spread(values))
        for model in models[1:]:
            differences = {
                figure: [getattr(a, figure) - getattr(b, figure)
                         for a, b in zip(halves[model], halves[models[0]])]
                for figure in FIGURES
            }  # fmt: skip
            print(f"  {model} minus {models[0]}: " + spread(differences, signed=True))
            won = [f"{SHORT[f]} {sum(d > 0 for d in differences[f])}/{len(differences[f])}"
                   for f in FIGURES]  # fmt: skip
            print("    halves won: " + "  ".join(won))


def collection_name(folder: Path) -> str:
    """The folder's name; a seeded photo-edits collection keeps its parent's name too."""
    return f"{folder.parent.name}-{folder.name}" if folder.name == "photo-edits" else folder.name


def index_folder(folder: Path, variant: str, index_path: Path) -> float:
    """Bring the variant's index of the folder up to date; seconds taken (0 when nothing new)."""
    model, _, scales = variant.partition("@")
    scales_given = parse_scales(scales.replace("+", ",")) if scales else None
    settings = IndexSettings(folder, index_path=index_path, model=model, scales=scales_given)
    start = time.perf_counter()
    with RetrievalService.open(settings) as service:
        changes = service.update()
    return time.perf_counter() - start if changes.embedded else 0.0


def spread(values: dict[str, list[float]], signed: bool = False) -> str:
    number = "{:+.4f}" if signed else "{:.4f}"
    return "  ".join(
        f"{SHORT[figure]} {number.format(np.mean(row))} "
        f"({number.format(min(row))}..{number.format(max(row))})"
        for figure, row in values.items()
    )


if __name__ == "__main__":
    main()
