"""Larger-photo stand-ins: a seeded sample of a folder, upscaled and saved as JPEG, classes kept.

flowers5's photos are 128 x 128, so they never exercise what large photos cost (decoding,
resizing) or what reduced-scale decoding changes. These copies do, within limits: upscaled
photos carry less fine detail than photos taken at that size, so they decode a little faster and
differ less under reduced-scale decoding than real ones would. Grain (Gaussian noise added at
the full size) puts back pixel-level detail of the kind a phone sensor leaves; one noise field
serves every copy, each at a random offset, since drawing 36 M normals per photo would
dominate the run.

Phone-size copies store some photos turned, with the EXIF orientation that turns them back, as
a phone does for a photo taken in portrait: the displayed photo is the same either way.

Run:  python benchmarks/upscaled_copies.py OUT [--folder ../shared/data/flowers5] [--size 500]
          [--count 1000] [--seed 0] [--quality 90] [--grain 0] [--turned-every 0]
12-MP phone stand-ins:
      python benchmarks/upscaled_copies.py /tmp/phone-s1 --size 4032x3024 --quality 92 \\
          --grain 4 --turned-every 4 --count 300 --seed 1
12-MP HEIC stand-ins (x265 at its fastest preset: encoding costs seconds a photo):
      python benchmarks/upscaled_copies.py /tmp/phone-heic --size 4032x3024 --format heic \\
          --quality 80 --grain 4 --turned-every 4 --count 60 --seed 1
Then: python benchmarks/embedding_speed.py --folder OUT ...
      python benchmarks/decoding_quality.py OUT
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from foldervision.images import list_image_files

SHARED_FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
JPEG_QUALITY = 90

STORED_TURNED = {
    6: Image.Transpose.ROTATE_90,  # displayed 90 degrees clockwise: stored a quarter-turn back
    8: Image.Transpose.ROTATE_270,
    3: Image.Transpose.ROTATE_180,
}
"""EXIF orientation -> how the displayed photo is turned for storing; used in turn."""
EXIF_ORIENTATION_TAG = 0x0112
GRAIN_MARGIN = 64
"""The noise field is this much larger than a copy, so each copy's window starts elsewhere."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="A new folder for the copies.")
    parser.add_argument("--folder", default=str(SHARED_FLOWERS))
    parser.add_argument(
        "--size", default="500", help="Side of square copies (500) or WIDTHxHEIGHT (4032x3024)."
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG (or HEIC) quality.")
    parser.add_argument(
        "--format", choices=("jpeg", "heic"), default="jpeg", help="File format of the copies."
    )
    parser.add_argument(
        "--grain", type=float, default=0.0, help="Standard deviation of the added noise, levels."
    )
    parser.add_argument(
        "--turned-every",
        type=int,
        default=0,
        help="Store every Nth copy turned, with an EXIF orientation (0: none).",
    )
    arguments = parser.parse_args()
    source, out = Path(arguments.folder), Path(arguments.out)
    if out.exists():
        raise SystemExit(f"{out}: already exists; choose a new folder.")
    size = parse_size(arguments.size)
    files = list_image_files(source)
    rng = np.random.default_rng(arguments.seed)
    chosen = rng.choice(len(files), min(arguments.count, len(files)), replace=False)
    orientations = list(STORED_TURNED)
    grain = grain_field(size, arguments.grain, rng) if arguments.grain > 0 else None
    for number, index in enumerate(sorted(chosen.tolist())):
        path = files[index]
        suffix = ".heic" if arguments.format == "heic" else ".jpg"
        target = out / path.relative_to(source).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        turned = arguments.turned_every and number % arguments.turned_every == 0
        orientation = orientations[number // max(arguments.turned_every, 1) % 3] if turned else 1
        with Image.open(path) as image:
            photo = upscaled(image, size, orientation)
        if grain is not None:
            photo = with_grain(photo, grain, rng)
        save_copy(photo, target, orientation, arguments.quality)
    print(f"{len(chosen)} copies of {source} at {arguments.size} px in {out}")


def parse_size(text: str) -> tuple[int, int]:
    """(width, height) from "500" or "4032x3024"."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def upscaled(image: Image.Image, size: tuple[int, int], orientation: int) -> Image.Image:
    """The photo as displayed, at `size` (a portrait-turned copy is displayed upright, taller
    than wide), then turned the way it is stored: `size` again."""
    width, height = size
    displayed = (height, width) if orientation in (6, 8) else (width, height)
    photo = image.convert("RGB").resize(displayed, Image.Resampling.LANCZOS)
    return photo.transpose(STORED_TURNED[orientation]) if orientation != 1 else photo


def grain_field(size: tuple[int, int], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of standard deviation `grain` levels, rounded, a margin larger than `size`."""
    width, height = size
    shape = (height + GRAIN_MARGIN, width + GRAIN_MARGIN, 3)
    return np.rint(rng.standard_normal(shape, dtype=np.float32) * grain).astype(np.int16)


def with_grain(photo: Image.Image, field: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The photo plus a window of the noise field at a random offset (the noise is the same
    whichever way the photo is stored, so it is added to the stored pixels)."""
    top, left = rng.integers(0, GRAIN_MARGIN + 1, size=2)
    window = field[top : top + photo.height, left : left + photo.width]
    pixels = np.asarray(photo, dtype=np.int16) + window
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def save_copy(photo: Image.Image, target: Path, orientation: int, quality: int) -> None:
    """JPEG or, for a .heic target, HEIC through pillow-heif (x265's fastest preset)."""
    options: dict[str, object] = {"quality": quality}
    if target.suffix == ".heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
        options["enc_params"] = {"preset": "ultrafast"}
    if orientation != 1:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = orientation
        options["exif"] = exif.tobytes()
    photo.save(target, **options)


if __name__ == "__main__":
    main()
