"""CLIP on ONNX Runtime: an image `Embedder` the index uses unchanged, plus the text tower.

Images are decoded by the project's loader with OpenCLIP's resize and crop (`ShortestSideCrop`),
normalised with the folder's mean and std and run through image.onnx; texts are tokenized as
OpenCLIP does and run through text.onnx. Both outputs are L2-normalised, so an image vector and
a text vector compare by cosine, and the index's Euclidean ranking is the cosine ranking.
Neither TensorFlow nor torch is imported.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.clip.model_folder import GET_ONE, IMAGE_TOWER, ModelFolder, ModelFolderError
from foldervision.clip.preprocess import ShortestSideCrop, normalise
from foldervision.retrieval.backends import Forward
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.spec import EmbedderSpec

CLIP_LAYER = "image_embeds"
NORM_EPSILON = 1e-12
"""torch.nn.functional.normalize's floor on the norm, as OpenCLIP's encoders use it."""


def unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, NORM_EPSILON)).astype(np.float32)


def clip_spec(model: ModelFolder) -> EmbedderSpec:
    """What decides a CLIP image vector: the model's name and image tower, its input size."""
    return EmbedderSpec(
        model=f"clip:{model.config.name}",
        weights=f"{IMAGE_TOWER} sha256:{model.recorded_sha256(IMAGE_TOWER)}",
        image_size=model.config.image_size,
        color_mode="rgb",
        layer=CLIP_LAYER,
        pooling="none",
    )


class ClipEmbedder(Embedder):
    """Image vectors for the index (the `Embedder` interface) and text vectors for queries.

    Each ONNX session is opened on first use, so checking an unchanged index loads nothing.
    """

    def __init__(self, model: ModelFolder) -> None:
        config = model.config
        super().__init__(
            clip_spec(model),
            self._no_keras_model,
            backend="onnx",
            resize=ShortestSideCrop(config.image_size, config.interpolation),
        )
        self.model = model
        self._text_lock = threading.Lock()
        self._text_session: Any = None
        self._tokenizer: Any = None

    @staticmethod
    def _no_keras_model() -> Any:
        raise NotImplementedError("CLIP runs only as its ONNX towers; it has no Keras model.")

    def make_forward(self) -> Forward:
        """uint8 crops (N, S, S, 3) -> unit image vectors, one image per run on every core."""
        from foldervision.onnx_runtime import parallel_forward

        session = open_tower(self.model.image_tower)
        config = self.model.config
        forward = parallel_forward(session)

        def run(pixels: np.ndarray) -> np.ndarray:
            return unit_rows(forward(normalise(pixels, config.mean, config.std)))

        return run

    @property
    def tokenizer(self) -> Any:
        from foldervision.clip.tokenizer import ClipTokenizer

        with self._text_lock:
            if self._tokenizer is None:
                self._tokenizer = ClipTokenizer(
                    self.model.vocabulary, self.model.config.context_length
                )
            return self._tokenizer

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> unit text vectors (len(texts), D), comparable with the image vectors."""
        if not texts:
            return np.zeros((0, self.model.config.embed_dim), np.float32)
        tokens = self.tokenizer(list(texts))
        session = self._text_tower()
        tower_input = session.get_inputs()[0]
        if "int32" in tower_input.type:
            tokens = tokens.astype(np.int32)
        rows = [tokens] if _takes_batches(tower_input) else [row[None] for row in tokens]
        outputs = [session.run(None, {tower_input.name: part})[0] for part in rows]
        return unit_rows(np.asarray(np.concatenate(outputs), dtype=np.float32))

    def _text_tower(self) -> Any:
        with self._text_lock:
            if self._text_session is None:
                self._text_session = open_tower(self.model.text_tower)
            return self._text_session


def open_tower(path: Path) -> Any:
    """An ONNX Runtime session on one tower; a damaged file is one line naming it."""
    from foldervision.onnx_runtime import open_session

    try:
        return open_session(path)
    except Exception as error:  # onnxruntime raises its own types for a damaged file
        raise ModelFolderError(
            f"{path}: cannot load this ONNX file ({type(error).__name__}); {GET_ONE}."
        ) from error


def _takes_batches(tower_input: Any) -> bool:
    """False for a tower exported with a fixed batch of one (some published exports are)."""
    first = tower_input.shape[0] if tower_input.shape else None
    return not isinstance(first, int) or first != 1


def load_clip_embedder(model: str) -> ClipEmbedder:
    """`clip:FOLDER`, or a registered name such as `clip-vit-b32` that `models pull` fetched."""
    from foldervision.clip.models import resolve_model_folder

    return ClipEmbedder(resolve_model_folder(model))
