"""Embedders that need no network: for tests of the index, stores, service and CLI plumbing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from foldervision.retrieval.embedder import Embedder, EmbedderSpec


class NumpyEmbedder(Embedder):
    """An Embedder whose vectors come from a NumPy function of the decoded pixels."""

    def __init__(self, spec: EmbedderSpec, function: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__(spec, build_feature_model=lambda: None)
        self.function = function
        self.calls: list[int] = []

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.calls.append(len(pixels))
        vectors = self.function(np.asarray(pixels, dtype=np.float64))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def colour_layout_embedder(image_size: int = 16) -> NumpyEmbedder:
    """A 4x4 grid of mean colours (48 dims): near-identical pictures give near-identical vectors."""

    def colour_layout(pixels: np.ndarray) -> np.ndarray:
        count, side = len(pixels), image_size // 4
        cells = pixels.reshape(count, 4, side, 4, side, 3).mean(axis=(2, 4))
        return cells.reshape(count, -1) - 127.5

    spec = EmbedderSpec("colour-layout", "none", image_size, "rgb", layer="cells", pooling="none")
    return NumpyEmbedder(spec, colour_layout)


def green_angle_embedder() -> NumpyEmbedder:
    """An image's vector is its mean (red, green), so solid colours give known angles."""
    spec = EmbedderSpec("stub", "none", image_size=8, color_mode="rgb", layer="mean")
    return NumpyEmbedder(spec, lambda pixels: pixels.mean(axis=(1, 2))[:, :2])
