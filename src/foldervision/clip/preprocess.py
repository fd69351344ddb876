"""Image to CLIP input, as OpenCLIP's evaluation transform does it (torchvision on a PIL image).

Resize so the shorter side is the model's size (bicubic, the longer side rounded down), crop the
centre square (the offset rounded half to even, as Python's `round`), scale to [0, 1] and
normalise with the model's mean and std. Decoding (EXIF orientation, transparency on white,
16-bit images) is the project's one loader, `foldervision.images`; only the resize differs from
the other models', so it is passed to that loader as a `Resize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ShortestSideCrop:
    """OpenCLIP's "shortest" resize mode followed by its centre crop, on a decoded PIL image."""

    def __init__(self, size: int, interpolation: str = "bicubic") -> None:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Unknown interpolation {interpolation!r}; use one of {sorted(INTERPOLATIONS)}."
            )
        self.size = size
        self.resample = INTERPOLATIONS[interpolation]

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        scaled = resized_shape(width, height, self.size)
        if scaled != (width, height):
            image = image.resize(scaled, self.resample)
        return centre_crop(image, self.size)


def resized_shape(width: int, height: int, shortest: int) -> tuple[int, int]:
    """torchvision's size for "shorter side = shortest": the longer side scaled, rounded down."""
    if width <= height:
        return shortest, int(shortest * height / width)
    return int(shortest * width / height), shortest


def centre_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's `center_crop` of a PIL image at least `size` on each side."""
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S): to [0, 1], then (x - mean) / std per channel,
    in float32 as torchvision's `to_tensor` and `normalize` compute it."""
    scaled = np.asarray(pixels, dtype=np.float32) / np.float32(255)
    mean_array = np.asarray(mean, dtype=np.float32)
    std_array = np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean_array) / std_array).transpose(0, 3, 1, 2))
