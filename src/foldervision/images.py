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
from PIL import Image, ImageOps, JpegImagePlugin, features

from foldervision.atomic import atomic_path

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    | {".heic", ".heif", ".avif"}  # phone photos: pillow-heif reads HEIC/HEIF, Pillow AVIF
)
"""Extensions (lower case) that count as images; matched case-insensitively."""

DECODINGS = ("scaled", "full")
"""How a file becomes pixels of the size asked for. "scaled": a large image is decoded at reduced
scale (JPEG: DCT scaling, 1/2 to 1/8) or box-reduced after decoding (other formats), never below
SCALED_DECODING_FLOOR times the side asked for, then resized; "full": every pixel is decoded,
then resized. The two give slightly different pixels, so an index records which it used."""

SCALED_DECODING_FLOOR = 2
"""Scaled decoding stops at twice the side asked for, so the antialiased resize that follows
still does most of the filtering: leave-one-out P@4 and mAP stayed within 0.002 of whole
decoding on 12-MP photos and within 0.0033 on 1200x900 ones, the worst case (decoded at 1/2;
benchmarks/decoding_quality.py), where drafting down to the side itself (the loader before
2026-11) lost 0.0055 P@4 on 500-px copies (README)."""

COLOR_MODES: dict[str, int] = {"grayscale": 1, "rgb": 3}
"""Colour modes a model can ask for, with their channel count."""

Resize = Callable[[Image.Image], Image.Image]
"""A model's own resize of a decoded image (CLIP's shortest side + centre crop) instead of the
default: the whole image squashed to `image_size` with bilinear filtering."""

MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's own default bomb limit; anything larger is refused rather than decoded."""

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

HEIF_EXTENSIONS = frozenset({".heic", ".heif"})


def _register_phone_formats() -> bool:
    """HEIC/HEIF through pillow-heif (and AVIF too where Pillow lacks it); once, here, so that
    every Image.open in the process reads them. False when pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    register_avif = getattr(pillow_heif, "register_avif_opener", None)  # pillow-heif < 1.0
    if register_avif is not None and not features.check("avif"):
        register_avif()
    return True


HEIF_READABLE = _register_phone_formats()


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
    decoding: str = "full",
    resize: Resize | None = None,
) -> np.ndarray:
    """Decode one file to a uint8 array of shape (height, width, channels).

    EXIF orientation is applied, the image is converted to `color_mode` and, when
    `image_size` is given, resized with bilinear filtering (antialiased when shrinking), or by
    `resize` when given; from every pixel or, with decoding="scaled", from a reduced decode
    (see DECODINGS). Raises ImageLoadError with the file name for anything that cannot be
    decoded.
    """
    path = Path(path)
    try:
        return _decode(path, image_size, color_mode, decoding, name=str(path), resize=resize)
    except FileNotFoundError as error:
        raise ImageLoadError(f"{path}: file not found.") from error


def decode_image_bytes(
    data: bytes,
    name: str,
    image_size: int | tuple[int, int] | None = None,
    color_mode: str = "rgb",
    decoding: str = "full",
    resize: Resize | None = None,
) -> np.ndarray:
    """Decode an image held in memory (a web upload, say) exactly as `load_image` decodes files.

    `name` is what error messages call it (the uploaded file's name).
    """
    return _decode(io.BytesIO(data), image_size, color_mode, decoding, name=name, resize=resize)


def _decode(
    source: Path | io.BytesIO,
    image_size: int | tuple[int, int] | None,
    color_mode: str,
    decoding: str,
    name: str,
    resize: Resize | None = None,
) -> np.ndarray:
    check_decoding(decoding)
    size = None if image_size is None else _as_size(image_size)
    floor = None if size is None or decoding == "full" else SCALED_DECODING_FLOOR * max(size)
    try:
        with _open(source, floor) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy when upright
            image = _to_mode(image, color_mode)
            if floor is not None:
                image = _reduced(image, floor)
            if resize is not None:
                image = resize(image)
            elif size is not None:
                image = image.resize(size, Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(
            f"{name}: refused, image is larger than {MAX_IMAGE_PIXELS} pixels "
            "(possible decompression bomb); shrink it or remove it."
        ) from error
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as error:
        reason = _missing_reader(name) or _short(error).replace(repr(source), "the data")
        raise ImageLoadError(f"{name}: cannot decode image ({reason}).") from error
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return pixels


def check_decoding(decoding: str) -> None:
    if decoding not in DECODINGS:
        raise ValueError(f"Unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}.")


def _open(source: Path | io.BytesIO, floor: int | None) -> Image.Image:
    """Open (headers only) and, given a `floor`, set a large JPEG to decode at the smallest DCT
    scale whose sides stay at least `floor`. That is also how a JPEG above the bomb limit is
    read: at a scale that fits under it, without ever allocating the full size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        if floor is None or not _starts_like_jpeg(source):
            raise
        image = JpegImagePlugin.JpegImageFile(source)  # the class itself checks no bomb limit
    if floor is not None and _dct_scalable(image, floor):
        image.draft(None, (floor, floor))
    if image.width * image.height > MAX_IMAGE_PIXELS:  # also when a warning filter was lost
        image.close()
        raise Image.DecompressionBombError(f"{image.width}x{image.height} pixels")
    return image


def _dct_scalable(image: Image.Image, floor: int) -> bool:
    """A JPEG (phone MPOs included) at least twice `floor` on both sides; a smaller one is left
    at full scale with its decoder untouched, so it decodes exactly as whole decoding does."""
    return isinstance(image, JpegImagePlugin.JpegImageFile) and min(image.size) >= 2 * floor


def _starts_like_jpeg(source: Path | io.BytesIO) -> bool:
    if isinstance(source, io.BytesIO):
        source.seek(0)
        return source.getvalue()[:3] == b"\xff\xd8\xff"
    with open(source, "rb") as file:
        return file.read(3) == b"\xff\xd8\xff"


def _reduced(image: Image.Image, floor: int) -> Image.Image:
    """Box-average by the largest whole factor that keeps both sides at least `floor`: cheap,
    and the resize after it then filters far fewer pixels."""
    factor = min(image.width // floor, image.height // floor)
    return image.reduce(factor) if factor >= 2 else image


def _missing_reader(name: str) -> str | None:
    """Why a phone format cannot be read here, when that is the reason, with the fix."""
    suffix = Path(name).suffix.lower()
    if suffix in HEIF_EXTENSIONS and not HEIF_READABLE:
        return "HEIC/HEIF needs pillow-heif: pip install pillow-heif"
    if suffix == ".avif" and not features.check("avif"):
        return "AVIF needs Pillow 11.3 or later: pip install -U pillow"
    return None


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
    decoding: str = "full",
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
            return path, load_image(path, image_size, color_mode, decoding, resize), None
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
    decoding: str = "full",
    resize: Resize | None = None,
) -> LoadedImages:
    """Load many files into one uint8 array; bad files are skipped and listed, never fatal."""
    height, width = _as_size(image_size)[::-1]
    channels = channels_for(color_mode)
    paths = list(paths)
    pixels = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    loaded: list[Path] = []
    skipped: list[SkippedFile] = []
    for path, image, skip in iter_images(
        paths, image_size, color_mode, decoding=decoding, resize=resize
    ):
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
