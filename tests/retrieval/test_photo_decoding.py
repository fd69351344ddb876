"""Phone photos in the index: large photos decoded scaled give the whole decode's vectors, HEIC
photos are indexed, and vectors from the two decodings never share an index."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foldervision.errors import IndexMismatchError
from foldervision.images import load_image
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.index import ImageIndex, follow_existing_index
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.spec import EmbedderSpec

LARGE_SIDE = 2000
CLOSE = 0.03
"""Largest distance allowed between the unit vectors of one photo decoded scaled and whole;
two different photos lie around 0.5 to 1 apart."""


def large_photo(name: str) -> Image.Image:
    import skimage.data

    photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return photo.resize((LARGE_SIDE, LARGE_SIDE * 3 // 4), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("large")
    paths = []
    for name in ("astronaut", "chelsea", "coffee"):
        large_photo(name).save(folder / f"{name}.jpg", quality=92)
        paths.append(folder / f"{name}.jpg")
    return paths


def test_the_default_decodes_large_photos_scaled(embedder: Embedder) -> None:
    assert embedder.spec.decoding == "scaled"
    assert EmbedderSpec.from_dict(embedder.spec.to_dict()) == embedder.spec


def test_a_large_photo_decoded_scaled_keeps_its_whole_decode_vector(
    embedder: Embedder, large_photos: list[Path]
) -> None:
    def vectors(decoding: str) -> np.ndarray:
        size = embedder.spec.image_size
        pixels = [load_image(path, size, decoding=decoding) for path in large_photos]
        return embedder.embed_pixels(np.stack(pixels))

    scaled, whole = vectors("scaled"), vectors("full")
    from_files = np.concatenate([batch.vectors for batch in embedder.embed_files(large_photos)])

    np.testing.assert_allclose(from_files, scaled, atol=1e-6)  # the embedder decodes scaled
    distances = np.linalg.norm(scaled - whole, axis=1)
    assert distances.max() < CLOSE, distances
    between_photos = np.linalg.norm(whole[:, None] - whole[None], axis=-1)[np.triu_indices(3, 1)]
    assert between_photos.min() > 10 * CLOSE


def test_heic_photos_are_indexed_beside_jpegs(tmp_path: Path, embedder: Embedder) -> None:
    photo = large_photo("chelsea").resize((400, 300))
    photo.save(tmp_path / "cat.jpg", quality=92)
    photo.save(tmp_path / "IMG_0001.HEIC", format="HEIF", quality=90)
    large_photo("astronaut").resize((400, 300)).save(tmp_path / "astronaut.avif", quality=90)

    with ImageIndex.open(IndexSettings(tmp_path), embedder.spec) as index:
        update = index.update(embedder)
        stored = index.vectors()

    assert sorted(update.embedded) == ["IMG_0001.HEIC", "astronaut.avif", "cat.jpg"]
    assert not update.skipped
    vector_of = dict(zip((index.relative(path) for path in stored.paths), stored.vectors))
    same_photo = np.linalg.norm(vector_of["IMG_0001.HEIC"] - vector_of["cat.jpg"])
    other_photo = np.linalg.norm(vector_of["astronaut.avif"] - vector_of["cat.jpg"])
    assert same_photo < 0.2 < other_photo


def test_an_index_decoded_whole_is_refused_by_a_scaled_run(
    tmp_path: Path, embedder: Embedder
) -> None:
    from foldervision.retrieval.catalogue import Catalogue

    whole = dataclasses.replace(embedder.spec, decoding="full")
    assert whole.fingerprint() != embedder.spec.fingerprint()
    catalogue = Catalogue.open(tmp_path / "index.sqlite")
    with catalogue.transaction():
        catalogue.set_setting("spec", json.dumps(whole.to_dict()))
    catalogue.close()

    settings = IndexSettings(tmp_path, index_path=tmp_path / "index.sqlite")
    with pytest.raises(IndexMismatchError, match="large photos decoded whole, but this run"):
        ImageIndex.open(settings, embedder.spec)


def test_an_index_decoded_whole_keeps_decoding_whole_unless_asked(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Indexes made before scaled decoding was the default go on working, as they were built."""
    whole = dataclasses.replace(embedder.spec, decoding="full")
    with ImageIndex.open(IndexSettings(tmp_path), whole):
        pass
    following = follow_existing_index(IndexSettings(tmp_path))
    asked = follow_existing_index(IndexSettings(tmp_path, decoding="scaled"))
    rebuilding = follow_existing_index(IndexSettings(tmp_path), rebuild=True)
    new_folder = follow_existing_index(IndexSettings(tmp_path / "elsewhere"))

    assert following.decoding == "full"
    assert asked.decoding == rebuilding.decoding == new_folder.decoding == "scaled"
    assert not (tmp_path / "elsewhere").exists()  # looking created nothing
