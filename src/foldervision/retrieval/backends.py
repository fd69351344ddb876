"""How an embedding model is run: the registry of backends (`BACKENDS`).

A backend turns an `EmbedderSpec` and a way to build the Keras embedding model into a forward
function: uint8 pixels (N, S, S, C) -> float32 unit vectors (N, D). The Keras model is the one
definition of the network, pooling and normalisation; a backend only decides what executes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from foldervision.registry import Registry

if TYPE_CHECKING:
    from foldervision.retrieval.spec import EmbedderSpec

Forward = Callable[[np.ndarray], np.ndarray]
"""uint8 pixels (N, S, S, C) -> float32 unit vectors (N, D)."""

BackendFactory = Callable[["EmbedderSpec", Callable[[], Any]], Forward]

DEFAULT_BACKEND = "onnx"
"""ONNX Runtime on the exported embedding model: on CPUs it ran the same vectors ~2x faster than
Keras (benchmarks/embedding_speed.py). `keras` stays for GPUs and as the fallback."""

BACKENDS: Registry[BackendFactory] = Registry("embedding backend")
"""Backend name -> its factory, registered as "module:function" and imported on first use
(keeps start-up fast)."""


def register_backend(name: str, factory: BackendFactory | str) -> None:
    BACKENDS.register(name, factory)


def available_backends() -> list[str]:
    return BACKENDS.names()


def get_backend(name: str) -> BackendFactory:
    return BACKENDS.get(name)


def keras_forward(spec: EmbedderSpec, build_model: Callable[[], Any]) -> Forward:
    """The Keras model in a traced `tf.function` (no `model.predict` set-up per call)."""
    import tensorflow as tf

    from foldervision.images import channels_for

    model = build_model()
    channels = channels_for(spec.color_mode)
    signature = tf.TensorSpec([None, spec.image_size, spec.image_size, channels], tf.uint8)

    @tf.function(input_signature=[signature])
    def forward(pixels: tf.Tensor) -> tf.Tensor:
        return model(tf.cast(pixels, tf.float32), training=False)

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(forward(np.ascontiguousarray(pixels, dtype=np.uint8)), dtype=np.float32)

    return run


register_backend("keras", keras_forward)
register_backend("onnx", "foldervision.retrieval.onnx_backend:onnx_forward")
