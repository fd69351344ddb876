"""The edited copies benchmarks/duplicates_quality.py plants: light edits and hard ones.

Each edit maps a Pillow RGB image (and a seeded random generator, for the ones that choose an
offset) to the copy, and names the format it is saved in. The sizes are relative to the
original, because flowers5 photos are only 128 px: a "160-px thumbnail" of a 4000-px phone photo
keeps 4% of its side, which a 128-px photo cannot show, so the thumbnail here keeps 40% (51 px),
the smallest copy whose pixels still show the flower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


@dataclass(frozen=True)
class EditKind:
    edit: Edit
    extension: str
    quality: int | None

    def save(self, image: Image.Image, random: np.random.Generator, path) -> None:
        options = {"quality": self.quality} if self.quality else {}
        self.edit(image, random).save(path, **options)


def same(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image


def resized(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.resize((max(16, image.width // 2), max(16, image.height // 2)), Image.BICUBIC)


def cropped(image: Image.Image, random: np.random.Generator) -> Image.Image:
    dx, dy = round(image.width * 0.04), round(image.height * 0.04)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def turned(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.rotate(4, resample=Image.BICUBIC, expand=False, fillcolor=(0, 0, 0))


def brighter(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(1.3)


def lower_contrast(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(0.7)


def captioned(image: Image.Image, random: np.random.Generator) -> Image.Image:
    bar = max(12, image.height // 8)
    result = Image.new("RGB", (image.width, image.height + bar), (255, 255, 255))
    result.paste(image, (0, 0))
    ImageDraw.Draw(result).text((4, image.height + 2), "holiday 2019 - copy", fill=(0, 0, 0))
    return result


LIGHT_EDITS = {
    "resized": EditKind(resized, "jpg", 90),
    "recompressed": EditKind(same, "jpg", 30),
    "cropped": EditKind(cropped, "jpg", 90),
    "turned": EditKind(turned, "jpg", 90),
    "brighter": EditKind(brighter, "jpg", 90),
    "lower_contrast": EditKind(lower_contrast, "jpg", 90),
    "captioned": EditKind(captioned, "jpg", 90),
    "png": EditKind(same, "png", None),
    "webp": EditKind(same, "webp", 80),
}


def mirrored(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(image)


def turned_90(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_90)


def turned_180(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_180)


def turned_270(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_270)


def crop_to(image: Image.Image, random: np.random.Generator, keep: float) -> Image.Image:
    """`keep` of each side, at a random place in the frame."""
    width, height = round(image.width * keep), round(image.height * keep)
    left = int(random.integers(0, image.width - width + 1))
    top = int(random.integers(0, image.height - height + 1))
    return image.crop((left, top, left + width, top + height))


def cropped_28(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return crop_to(image, random, 0.72)


def thumbnail(image: Image.Image, random: np.random.Generator) -> Image.Image:
    side = max(32, round(max(image.size) * 0.4))
    small = image.copy()
    small.thumbnail((side, side), Image.LANCZOS)
    return small


def screenshot(image: Image.Image, random: np.random.Generator) -> Image.Image:
    """The photo shown on a phone, zoomed 1.25x, between a status bar and a navigation bar."""
    shown = image.resize((round(image.width * 1.25), round(image.height * 1.25)), Image.BILINEAR)
    side_margin = max(8, shown.width // 12)
    status, navigation = max(14, shown.height // 9), max(18, shown.height // 7)
    width = shown.width + 2 * side_margin
    height = status + shown.height + navigation + 2 * side_margin
    screen = Image.new("RGB", (width, height), (18, 18, 18))
    draw = ImageDraw.Draw(screen)
    font = ImageFont.load_default(size=max(9, status - 4))
    draw.text((6, 1), "12:34", fill=(240, 240, 240), font=font)
    draw.rectangle((width - 26, 3, width - 8, status - 4), outline=(240, 240, 240), width=2)
    screen.paste(shown, (side_margin, status + side_margin))
    bottom = height - navigation
    for centre in (width // 4, width // 2, 3 * width // 4):
        draw.ellipse((centre - 5, bottom + 5, centre + 5, bottom + 15), outline=(200, 200, 200))
    return screen


def greyscale(image: Image.Image, random: np.random.Generator) -> Image.Image:
    return image.convert("L")


def watermarked(image: Image.Image, random: np.random.Generator) -> Image.Image:
    """Half-transparent white text across the middle and a small mark in a corner."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=max(10, image.height // 9))
    draw.text((image.width // 20, image.height // 2 - image.height // 12), "(c) PhotoStudio",
              fill=(255, 255, 255, 140), font=font)  # fmt: skip
    corner = max(8, image.width // 10)
    draw.rectangle((image.width - corner - 4, image.height - corner - 4, image.width - 4,
                    image.height - 4), fill=(255, 255, 255, 110))  # fmt: skip
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def mixed(image: Image.Image, random: np.random.Generator) -> Image.Image:
    """What a phone's editor then a messenger do: turn 90 degrees, crop to 85%, shrink 3/4."""
    turned_copy = crop_to(turned_90(image, random), random, 0.85)
    return turned_copy.resize(
        (round(turned_copy.width * 0.75), round(turned_copy.height * 0.75)), Image.BICUBIC
    )


HARD_EDITS = {
    "mirrored": EditKind(mirrored, "jpg", 90),
    "turned_90": EditKind(turned_90, "jpg", 90),
    "turned_180": EditKind(turned_180, "jpg", 90),
    "turned_270": EditKind(turned_270, "jpg", 90),
    "cropped_28": EditKind(cropped_28, "jpg", 90),
    "thumbnail": EditKind(thumbnail, "jpg", 80),
    "screenshot": EditKind(screenshot, "png", None),
    "jpeg_q12": EditKind(same, "jpg", 12),
    "greyscale": EditKind(greyscale, "jpg", 90),
    "watermarked": EditKind(watermarked, "jpg", 90),
    "mixed": EditKind(mixed, "jpg", 35),
}

ALL_EDITS = {**LIGHT_EDITS, **HARD_EDITS}
