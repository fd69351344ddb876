"""Larger-photo stand-ins: a seeded sample of a folder, upscaled and saved as JPEG, classes kept.

flowers5's photos are 128 x 128, so they never exercise what large photos cost (decoding,
resizing) or what JPEG draft mode would change. These copies do, within limits: upscaled photos
carry less fine detail than photos taken at that size, so they decode a little faster and
differ less under draft mode than real ones would.

Run:  python benchmarks/upscaled_copies.py OUT [--folder ../shared/data/flowers5] [--size 500]
          [--count 1000] [--seed 0]
Then: python benchmarks/embedding_speed.py --folder OUT ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from foldervision.images import list_image_files

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
JPEG_QUALITY = 90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="A new folder for the copies.")
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument("--size", type=int, default=500, help="Side of the square copies, px.")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    source, out = Path(arguments.folder), Path(arguments.out)
    if out.exists():
        raise SystemExit(f"{out}: already exists; choose a new folder.")
    files = list_image_files(source)
    rng = np.random.default_rng(arguments.seed)
    chosen = rng.choice(len(files), min(arguments.count, len(files)), replace=False)
    for index in sorted(chosen.tolist()):
        path = files[index]
        target = out / path.relative_to(source).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            size = (arguments.size, arguments.size)
            upscaled = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        upscaled.save(target, quality=JPEG_QUALITY)
    print(f"{len(chosen)} copies of {source} at {arguments.size} px in {out}")


if __name__ == "__main__":
    main()
