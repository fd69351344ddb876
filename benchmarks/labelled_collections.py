"""Labelled folders to judge retrieval on, built from data that installed packages ship.

flowers5 alone is one narrow case (5 broad classes, label noise). This writes two more, each a
folder with one subfolder per class, for `foldervision evaluate-retrieval`:

photo-edits   Instance retrieval, like UKBench: each class is one base photo, and its images are
              seeded edits that keep its identity: a crop (30-80% of each side), a rotation
              (up to 35 degrees, or a quarter turn in one of six), a mirror (one in two),
              colour jitter (brightness, contrast, saturation 0.5-1.5), grey (one in seven),
              a rescale (longest side 160-480 px) and JPEG re-encoding (quality 55-95).
              Base photos: the real photos in scikit-image's bundled data, matplotlib's
              sample_data and scikit-learn's sample images (BASE_PHOTOS; 21 photos, so 21
              classes).
mnist-digits  Category retrieval on a very different domain: the first N test digits of each
              class 0-9 from the MNIST IDX files (../shared/data/mnist), as 28 x 28 PNGs
              (`--digits-skip S`: the N after the first S, a fresh set of digits).

Nothing is downloaded; nothing is written inside the repository.

Run:  python benchmarks/labelled_collections.py --out /tmp/q/collections [--copies 8]
          [--digits-per-class 100] [--digits-skip 0] [--seed 0] [--mnist ../shared/data/mnist]
Then: foldervision evaluate-retrieval /tmp/q/collections/photo-edits --index /tmp/q/edits.sqlite
"""

from __future__ import annotations

import argparse
import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from foldervision.datasets import read_mnist
from foldervision.images import save_image_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"

BASE_PHOTOS = {
    "skimage": [
        "data/astronaut.png", "data/camera.png", "data/chelsea.png", "data/coffee.png",
        "data/coins.png", "data/hubble_deep_field.jpg", "data/ihc.png", "data/moon.png",
        "data/motorcycle_left.png", "data/retina.jpg", "data/rocket.jpg", "data/page.png",
        "data/grass.png", "data/gravel.png", "data/brick.png", "data/text.png", "data/cell.png",
    ],
    "matplotlib": [
        "mpl-data/sample_data/grace_hopper.jpg",
        "mpl-data/sample_data/Minduka_Present_Blue_Pack.png",
    ],
    "sklearn": ["datasets/images/china.jpg", "datasets/images/flower.jpg"],
}  # fmt: skip
"""Package -> its bundled photos (paths inside the package): real photos, not charts."""


CROP_SIDE = (0.3, 0.8)
"""Each crop keeps this share of each side: tight enough that the base photo is not obvious
(with 0.5-0.95, MobileNetV2 got P@4 0.996: a collection nothing could improve on)."""
ROTATION_DEGREES = 35
JITTER = (0.5, 1.5)
"""Brightness, contrast and saturation factors."""
GREY_SHARE = 0.15
"""Copies turned grey, as a black-and-white print of the photo."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="A folder outside the repository.")
    parser.add_argument("--copies", type=int, default=8, help="Edited copies per base photo.")
    parser.add_argument("--digits-per-class", type=int, default=100)
    parser.add_argument(
        "--digits-skip", type=int, default=0, help="Skip this many test digits of each class."
    )
    parser.add_argument("--mnist", default=str(SHARED_MNIST), help="Folder of MNIST IDX files.")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    out = Path(arguments.out).resolve()
    if out.is_relative_to(REPO_ROOT):
        raise SystemExit(f"{out}: inside the repository; pass --out a folder elsewhere.")
    for name in ("photo-edits", "mnist-digits"):
        if (out / name).exists():
            raise SystemExit(f"{out / name}: already exists; pass a new --out or remove it.")
    rng = np.random.default_rng(arguments.seed)
    photos = base_photos()
    edits = write_photo_edits(out / "photo-edits", photos, arguments.copies, rng)
    digits = write_digits(
        out / "mnist-digits", arguments.mnist, arguments.digits_per_class, arguments.digits_skip
    )
    print(f"{out / 'photo-edits'}: {len(photos)} classes, {edits} images")
    print(f"{out / 'mnist-digits'}: 10 classes, {digits} images")


def base_photos() -> list[Path]:
    """The bundled photos, located without importing their packages (sklearn is slow to)."""
    found = []
    for package, relatives in BASE_PHOTOS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{package}: not installed; pip install it to build photo-edits.")
        root = Path(next(iter(spec.submodule_search_locations)))
        found += [root / relative for relative in relatives]
    missing = [str(path) for path in found if not path.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: not in this version of the package.")
    return found


def write_photo_edits(
    folder: Path, photos: list[Path], copies: int, rng: np.random.Generator
) -> int:
    """`copies` seeded identity-keeping edits of each base photo, one class folder each."""
    written = 0
    for path in photos:
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        for copy in range(copies):
            edited = edit(photo, rng)
            target = folder / path.stem.lower() / f"{path.stem.lower()}_{copy:02d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            edited.save(buffer, "JPEG", quality=int(rng.integers(55, 96)))
            target.write_bytes(buffer.getvalue())
            written += 1
    return written


def edit(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One crop, rotation, optional mirror, colour jitter, optional grey and rescale."""
    width, height = photo.size
    keep_w, keep_h = (rng.uniform(CROP_SIDE[0], CROP_SIDE[1], size=2) * (width, height)).astype(int)
    left, top = int(rng.integers(0, width - keep_w + 1)), int(rng.integers(0, height - keep_h + 1))
    edited = photo.crop((left, top, left + keep_w, top + keep_h))
    if rng.random() < 1 / 6:
        edited = edited.transpose(Image.Transpose.ROTATE_90)
    else:
        degrees = float(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES))
        edited = edited.rotate(degrees, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        edited = edited.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        edited = enhancer(edited).enhance(float(rng.uniform(*JITTER)))
    if rng.random() < GREY_SHARE:
        edited = edited.convert("L").convert("RGB")
    scale = float(rng.uniform(160, 480)) / max(edited.size)
    size = (max(16, round(edited.width * scale)), max(16, round(edited.height * scale)))
    return edited.resize(size, Image.Resampling.LANCZOS)


def write_digits(folder: Path, mnist: str, per_class: int, skip: int = 0) -> int:
    """`per_class` MNIST test images of each digit after its first `skip`, a folder each."""
    images, labels = read_mnist(mnist)["test"]
    written = 0
    for digit in range(10):
        for index in np.flatnonzero(labels == digit)[skip : skip + per_class]:
            save_image_atomic(images[index], folder / str(digit) / f"test_{index:05d}.png")
            written += 1
    return written


if __name__ == "__main__":
    main()
