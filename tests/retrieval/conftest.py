"""Shared fixtures for the retrieval tests: one real MobileNetV2 per session, small real folders.

The network runs at 96 px to keep the suite fast on two CPU cores; every path (decoding, index,
search) is the same one the default 224 px uses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foldervision.images import save_image_atomic
from foldervision.retrieval.embedder import Embedder, mobilenetv2_embedder
from foldervision.retrieval.settings import IndexSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE_SIZE = 96
PHOTO_SIDE = 160

READABLE_PHOTOS = {
    "astronaut.jpg": "astronaut",
    "chelsea.jpeg": "chelsea",
    "Coffee.PNG": "coffee",
    "ROCKET.BMP": "rocket",
    "camera man.gif": "camera",
    "café au lait.webp": "coffee_crop",
    "猫 cat.tif": "cat",
}
"""File name -> skimage.data picture: every format we decode, odd names included."""

BROKEN_FILES = ("broken.jpg", "not really.png")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real pretrained MobileNetV2 embedder, built and traced once for the whole session."""
    session_embedder = mobilenetv2_embedder(image_size=TEST_IMAGE_SIZE)
    session_embedder.embed_pixels(np.zeros((1, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, 3), np.uint8))
    return session_embedder


@pytest.fixture
def cli_uses_session_embedder(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> Embedder:
    """Let CLI runs reuse the session's built network when they ask for the very same spec."""
    from foldervision.retrieval import service as retrieval_service
    from foldervision.retrieval.embedder import load_embedder

    def reuse_or_load(settings: IndexSettings) -> Embedder:
        loaded = load_embedder(settings)
        same = loaded.spec == embedder.spec and loaded.backend == embedder.backend
        return embedder if same else loaded

    monkeypatch.setattr(retrieval_service, "load_embedder", reuse_or_load)
    return embedder


@pytest.fixture(scope="session")
def photo_folder_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos in every format, with a truncated JPEG, a fake PNG and a text file."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    for name, picture in READABLE_PHOTOS.items():
        if picture == "coffee_crop":
            pixels = skimage.data.coffee()[100:300, 200:400]
        else:
            pixels = getattr(skimage.data, picture)()
        save_image_atomic(_shrink(pixels), folder / name)
    jpeg_bytes = (folder / "astronaut.jpg").read_bytes()
    (folder / BROKEN_FILES[0]).write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    (folder / BROKEN_FILES[1]).write_text("this is not an image", encoding="utf-8")
    (folder / "notes.txt").write_text("not an image, and not named like one", encoding="utf-8")
    return folder


@pytest.fixture
def readable_photos() -> list[str]:
    return sorted(READABLE_PHOTOS)


@pytest.fixture
def broken_photos() -> list[str]:
    return sorted(BROKEN_FILES)


@pytest.fixture
def photo_folder(photo_folder_template: Path, tmp_path: Path) -> Path:
    """A fresh copy per test, free to change."""
    return Path(shutil.copytree(photo_folder_template, tmp_path / "photos"))


@pytest.fixture
def digits_folder(tmp_path: Path) -> Path:
    """The repository's sample database (MNIST digits), copied so an index can be written."""
    source = REPO_ROOT / "images_database"
    return Path(shutil.copytree(source, tmp_path / "digits", ignore=shutil.ignore_patterns(".*")))


def _shrink(pixels: np.ndarray) -> np.ndarray:
    image = Image.fromarray(pixels)
    image.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
    return np.asarray(image)
