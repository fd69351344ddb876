"""The one place that reads images: which files count as images, how they are decoded and resized.

Every other module (training, evaluation, prediction, retrieval) goes through here so that a
picture is turned into pixels exactly one way, whatever the caller.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from foldervision.atomic import atomic_path

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
"""Extensions (lower case) that count as images; matched case-insensitively."""

COLOR_MODES: dict[str, int] = {"grayscale": 1, "rgb": 3}
"""Colour modes a model can ask for, with their channel count."""

Resize = Callable[[Image.Image], Image.Image]
"""A model's own resize of a decoded image (CLIP's shortest side + centre crop) instead of the
default: the whole image squashed to `image_size` with bilinear filtering."""

MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's own default bomb limit; anything larger is refused rather than decoded."""

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageLoadError(ValueError):
    """A file that exists but cannot be used (corrupt, truncated, too large, not an image)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file that was left out of a run, and why, so the user can fix or delete it."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class LoadedImages:
    """Pixels of the images that loaded, in the order of `paths`, plus the files that did not."""

    pixels: np.ndarray
    paths: list[Path]
    skipped: list[SkippedFile] = field(default_factory=list)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a regular file whose extension is one we decode (case-insensitive)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_image_files(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files below `folder`, sorted so that runs are repeatable; other files are ignored.

    Hidden files and folders (".foldervision" indexes, ".git", ...) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder. Pass a folder that contains images.")
    pattern = "**/*" if recursive else "*"
    files = [
        path
        for path in folder.glob(pattern)
        if is_image_file(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    ]
    return sorted(files, key=lambda path: path.as_posix())


def channels_for(color_mode: str) -> int:
    if color_mode not in COLOR_MODES:
        raise ValueError(f"Unknown color mode {color_mode!r}; use one of {sorted(COLOR_MODES)}.")
    return COLOR_MODES[color_mode]


def _to_mode(image: Image.Image, color_mode: str) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, 1, ...) to 'L' or 'RGB'.

    Transparent pixels are composited on white, which is what a viewer shows; 16-bit and
    32-bit integer images are rescaled from their real range instead of being clipped.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _rescale_high_bit_depth(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    target = "L" if color_mode == "grayscale" else "RGB"
    return image if image.mode == target else image.convert(target)


def _rescale_high_bit_depth(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray(((values - low) * scale).astype(np.uint8), mode="L")


def load_image(
    path: str | os.PathLike[str],
    image_size: int | tuple[int, int] | None = None,
    color_mode: str = "rgb",
    resize: Resize | None = None,
) -> np.ndarray:
    """Decode one file to a uint8 array of shape (height, width, channels).

    EXIF orientation is applied, the image is converted to `color_mode` and, when
    `image_size` is given, resized with bilinear filtering (antialiased when shrinking), or by
    `resize` when given. Raises ImageLoadError with the file name for anything that cannot be
    decoded.
    """
    path = Path(path)
    try:
        return _decode(path, image_size, color_mode, name=str(path), resize=resize)
    except FileNotFoundError as error:
        raise ImageLoadError(f"{path}: file not found.") from error


def decode_image_bytes(
    data: bytes,
    name: str,
    image_size: int | tuple[int, int] | None = None,
    color_mode: str = "rgb",
    resize: Resize | None = None,
) -> np.ndarray:
    """Decode an image held in memory (a web upload, say) exactly as `load_image` decodes files.

    `name` is what error messages call it (the uploaded file's name).
    """
    return _decode(io.BytesIO(data), image_size, color_mode, name=name, resize=resize)


def _decode(
    source: Path | io.BytesIO,
    image_size: int | tuple[int, int] | None,
    color_mode: str,
    name: str,
    resize: Resize | None = None,
) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                # No JPEG draft mode: decoding at reduced scale moved MobileNetV2 vectors by up
                # to 2e-2 and changed a third of the top-4 lists (benchmarks/embedding_speed.py).
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # no copy when upright
                image = _to_mode(image, color_mode)
                if resize is not None:
                    image = resize(image)
                elif image_size is not None:
                    image = image.resize(_as_size(image_size), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(
            f"{name}: refused, image is larger than {MAX_IMAGE_PIXELS} pixels "
            "(possible decompression bomb); shrink it or remove it."
        ) from error
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as error:
        reason = _short(error).replace(repr(source), "the data")  # Pillow names a BytesIO
        raise ImageLoadError(f"{name}: cannot decode image ({reason}).") from error
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return pixels


def _as_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """Pillow wants (width, height); we accept a square side or (height, width)."""
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (width, height)


def _short(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def iter_images(
    paths: Sequence[str | os.PathLike[str]],
    image_size: int | tuple[int, int],
    color_mode: str = "rgb",
    workers: int | None = None,
    resize: Resize | None = None,
) -> Iterator[tuple[Path, np.ndarray | None, SkippedFile | None]]:
    """Decode many files in parallel threads, in order: (path, pixels, None) or (path, None, skip).

    Pillow releases the GIL while decoding, so threads overlap decoding with whatever the
    consumer does (a model forward pass, usually).
    """
    workers = workers or min(8, (os.cpu_count() or 2) + 2)
    window = 4 * workers

    def load_one(path: Path) -> tuple[Path, np.ndarray | None, SkippedFile | None]:
        try:
            return path, load_image(path, image_size, color_mode, resize), None
        except ImageLoadError as error:
            return path, None, SkippedFile(str(path), str(error))

    # Keep at most `window` decodes in flight so a million-file folder never sits in memory.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        for path in paths:
            pending.append(pool.submit(load_one, Path(path)))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def load_images(
    paths: Iterable[str | os.PathLike[str]],
    image_size: int | tuple[int, int],
    color_mode: str = "rgb",
    resize: Resize | None = None,
) -> LoadedImages:
    """Load many files into one uint8 array; bad files are skipped and listed, never fatal."""
    height, width = _as_size(image_size)[::-1]
    channels = channels_for(color_mode)
    paths = list(paths)
    pixels = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    loaded: list[Path] = []
    skipped: list[SkippedFile] = []
    for path, image, skip in iter_images(paths, image_size, color_mode, resize=resize):
        if skip is not None:
            skipped.append(skip)
            continue
        pixels[len(loaded)] = image
        loaded.append(path)
    return LoadedImages(pixels=pixels[: len(loaded)], paths=loaded, skipped=skipped)


def save_image_atomic(pixels: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write an image so that a crash never leaves a half-written file behind."""
    array = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    image_format = Image.registered_extensions()[Path(path).suffix.lower()]
    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary, format=image_format)
