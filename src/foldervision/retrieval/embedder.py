"""Images to unit-length feature vectors: which network, which layer, and how they are pooled.

The same `Embedder` turns database files and query files into vectors, so an index and its
queries can never be preprocessed two different ways. What produced the vectors is summed up in
an `EmbedderSpec` (`retrieval.spec`), which the index stores and checks before mixing in new
vectors.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.images import Resize, SkippedFile, check_decoding, decode_image_bytes, iter_images
from foldervision.retrieval.backends import DEFAULT_BACKEND, Forward, get_backend
from foldervision.retrieval.settings import DEFAULT_MODEL, IndexSettings
from foldervision.retrieval.spec import (
    DEFAULT_DECODING,
    DEFAULT_PRECISION,
    PRECISIONS,
    SINGLE_SCALE,
    EmbedderSpec,
)

DEFAULT_IMAGE_SIZE = 224
"""MobileNetV2's native size; see benchmarks/retrieval_quality.py for the sizes we compared."""

DEFAULT_BATCH_SIZE = 16
"""Images gathered per forward call (a backend may split them further). Whole `foldervision index
--rebuild` of 1000 flowers5 photos on 2 cores, ONNX (farm-bench, medians): 4.12 s at 8,
4.05 s at 16, 4.29 s at 32, 4.27 s at 64; peak RSS grows with it (190 MB at 8, 263 MB at 64)."""

POOLINGS = ("avg", "gem")
DEFAULT_POOLING = "gem"
"""GeM beat average pooling on flowers5 at no extra cost (benchmarks/retrieval_quality.py)."""
GEM_POWER = 3.0
"""Generalized-mean pooling exponent (Radenovic et al.); 3 is the usual choice."""


@dataclass
class EmbeddedBatch:
    """Vectors for the files of one batch that loaded, plus the files that did not."""

    paths: list[Path]
    vectors: np.ndarray
    skipped: list[SkippedFile] = field(default_factory=list)


class Embedder:
    """Decode files with the project's loader and run them through the embedding model.

    The embedding model (network, pooling, L2 normalisation) is defined once in Keras; the
    backend (see `retrieval.backends`) decides what executes it. Both are set up on first use,
    so checking an unchanged index costs no model loading.
    """

    def __init__(
        self,
        spec: EmbedderSpec,
        build_feature_model: Callable[[], Any],
        backend: str = DEFAULT_BACKEND,
        resize: Resize | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.resize = resize
        """How a decoded image becomes `spec.image_size` (None: squashed, bilinear)."""
        self._build_feature_model = build_feature_model
        self._forward: Forward | None = None
        self._setup_lock = threading.Lock()
        get_backend(backend)  # an unknown backend fails now, not at the first image
        check_precision(spec.precision, backend)
        check_decoding(spec.decoding)

    def build_embedding_model(self) -> Any:
        """The Keras model: float pixels in [0, 255] -> pooled, flip-averaged unit vectors."""
        return embedding_model(self._build_feature_model(), self.spec)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels (N, S, S, C) -> float32 unit vectors (N, D)."""
        return self._forward_function()(np.ascontiguousarray(pixels, dtype=np.uint8))

    def _forward_function(self) -> Forward:
        """Set the backend up once, even when the first calls come from several threads."""
        with self._setup_lock:
            if self._forward is None:
                self._forward = self.make_forward()
            return self._forward

    def make_forward(self) -> Forward:
        """The backend's forward function for this spec (a model with no Keras graph, such as
        CLIP's ONNX towers, overrides this)."""
        return get_backend(self.backend)(self.spec, self.build_embedding_model)

    def embed_files(
        self, paths: Sequence[str | os.PathLike[str]], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[EmbeddedBatch]:
        """Embed files batch by batch, in order, with decoding and the network overlapped.

        Two batches may be in the network at once, so its threads never wait while the next
        batch is gathered; `iter_images` keeps only a small window of decodes in flight, so
        memory stays bounded however many files there are.
        """
        with ThreadPoolExecutor(2, thread_name_prefix="foldervision-embed") as forwards:
            in_flight: deque[tuple[EmbeddedBatch, Future[np.ndarray]]] = deque()
            for batch, pixels in self._decoded_batches(paths, batch_size):
                in_flight.append((batch, forwards.submit(self._vectors_for, pixels)))
                if len(in_flight) > 1:
                    yield _with_vectors(*in_flight.popleft())
            while in_flight:
                yield _with_vectors(*in_flight.popleft())

    def _decoded_batches(
        self, paths: Sequence[str | os.PathLike[str]], batch_size: int
    ) -> Iterator[tuple[EmbeddedBatch, list[np.ndarray]]]:
        """Batches of decoded pixels; files that fail to decode ride along as `skipped`."""
        batch = EmbeddedBatch(paths=[], vectors=np.zeros((0, 0), np.float32))
        pixels: list[np.ndarray] = []
        spec = self.spec
        decoded = iter_images(
            paths, spec.image_size, spec.color_mode, decoding=spec.decoding, resize=self.resize
        )
        for position, (path, image, skip) in enumerate(decoded, start=1):
            if skip is not None:
                batch.skipped.append(skip)
            else:
                batch.paths.append(path)
                pixels.append(image)
            if len(pixels) == batch_size or position == len(paths):
                yield batch, pixels
                batch = EmbeddedBatch(paths=[], vectors=np.zeros((0, 0), np.float32))
                pixels = []

    def embed_bytes(self, data: bytes, name: str) -> np.ndarray:
        """One in-memory image (an upload) -> its unit vector (D,), decoded like any file."""
        spec = self.spec
        pixels = decode_image_bytes(
            data, name, spec.image_size, spec.color_mode, spec.decoding, self.resize
        )
        return self.embed_pixels(pixels[np.newaxis])[0]

    def _vectors_for(self, pixels: list[np.ndarray]) -> np.ndarray:
        if not pixels:
            return np.zeros((0, 0), np.float32)
        return self.embed_pixels(np.stack(pixels))


def _with_vectors(batch: EmbeddedBatch, vectors: Future[np.ndarray]) -> EmbeddedBatch:
    batch.vectors = vectors.result()
    return batch


def check_precision(precision: str, backend: str) -> None:
    """INT8 models exist only as quantized ONNX files; say so before any work is done."""
    from foldervision.errors import FoldervisionError

    if precision not in PRECISIONS:
        raise FoldervisionError(
            f"Unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}."
        )
    if precision != DEFAULT_PRECISION and backend != "onnx":
        raise FoldervisionError(
            f"precision {precision} runs only on the onnx backend, not {backend!r}; "
            "use --backend onnx or --precision fp32."
        )


def embedding_model(feature_model: Any, spec: EmbedderSpec) -> Any:
    """Wrap a feature model with pooling, optional flip averaging and L2 normalisation.

    A multi-scale feature model returns one feature map per scale (`multi_scale_features`):
    each is pooled to a unit vector and the mean of those is the vector. Everything after
    decoding is one Keras graph, so every backend (and an exported file) computes exactly the
    same vectors.
    """
    import keras

    from foldervision.images import channels_for

    channels = channels_for(spec.color_mode)
    pixels = keras.Input((spec.image_size, spec.image_size, channels), name="pixels")
    features = _pooled(feature_model, pixels, spec)
    if spec.flip_average:
        from keras import ops

        features = features + _pooled(feature_model, ops.flip(pixels, axis=2), spec)
    return keras.Model(pixels, _unit(features), name="embedding")


def _pooled(feature_model: Any, pixels: Any, spec: EmbedderSpec) -> Any:
    """The pooled features of one image batch: at one scale as they are, at several the sum
    of each scale's unit vector (so no scale outweighs another by its activations' size)."""
    maps = feature_model(pixels, training=False)
    if not isinstance(maps, list | tuple):
        return pool_feature_map(maps, spec.pooling)
    pooled = [_unit(pool_feature_map(feature_map, spec.pooling)) for feature_map in maps]
    return sum(pooled[1:], pooled[0])


def _unit(features: Any) -> Any:
    from keras import ops

    norms = ops.sqrt(ops.maximum(ops.sum(features * features, axis=-1, keepdims=True), 1e-12))
    return features / norms


def multi_scale_features(build_at: Callable[[int], Any], spec: EmbedderSpec) -> Any:
    """A model from `spec.image_size` pixels to one feature map per scale: the pixels resized
    (bilinear) to each side in `spec.scale_sides()` and run through the backbone built at that
    side by `build_at` (the same weights each time)."""
    import keras
    from keras import ops

    from foldervision.images import channels_for

    channels = channels_for(spec.color_mode)
    pixels = keras.Input((spec.image_size, spec.image_size, channels), name="pixels")
    maps = []
    for side in spec.scale_sides():
        resized = pixels if side == spec.image_size else ops.image.resize(pixels, (side, side))
        backbone = build_at(side)
        backbone.name = f"backbone_{side}px"
        maps.append(backbone(resized, training=False))
    return keras.Model(pixels, maps, name="multi_scale_features")


def pool_feature_map(outputs: Any, pooling: str) -> Any:
    """Pool a (N, H, W, C) feature map to (N, C); a vector output is returned as it is."""
    from keras import ops

    if len(outputs.shape) == 2:
        return outputs
    if pooling == "gem":
        clamped = ops.maximum(outputs, 1e-6)
        return ops.power(ops.mean(ops.power(clamped, GEM_POWER), axis=[1, 2]), 1.0 / GEM_POWER)
    return ops.mean(outputs, axis=[1, 2])


# --------------------------------------------------------------------------------------------
# The embedders the CLI offers: a pretrained backbone, or a fine-tuned classifier's features.


def pretrained_embedder(
    model: str = DEFAULT_MODEL,
    image_size: int | None = None,
    weights: str | os.PathLike[str] = "auto",
    pooling: str = DEFAULT_POOLING,
    flip_average: bool = False,
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    decoding: str = DEFAULT_DECODING,
    scales: tuple[float, ...] | None = None,
) -> Embedder:
    """A pretrained ImageNet backbone (`models.pretrained`), its last feature map pooled; no
    head, no fine-tuning. `image_size` None: the backbone's native size; `scales` (fractions of
    it; None: the backbone's `search_scales`) more than one: multi-scale GeM
    (`multi_scale_features`).

    Flip averaging gained under 0.005 P@4 on flowers5 for twice the compute, so it is off.
    """
    from foldervision.cache import sha256_of
    from foldervision.models.pretrained import get_pretrained

    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}.")
    backbone = get_pretrained(model)
    resolved = backbone.resolve(weights)
    if resolved is None or resolved.path is None:
        raise ValueError(
            f"Image search needs pretrained {backbone.description} weights, got {weights!r}; "
            f"install them with: {backbone.install_command}"
        )
    image_size = image_size or backbone.image_size
    spec = EmbedderSpec(
        model=backbone.name,
        weights=f"{resolved.path.name} sha256:{sha256_of(resolved.path)}",
        image_size=image_size,
        color_mode="rgb",
        layer=backbone.feature_layer if pooling != "avg" else "pooled",
        pooling=pooling,
        flip_average=flip_average,
        precision=precision,
        decoding=decoding,
        scales=scales or backbone.search_scales,
    )

    def build_at(side: int) -> Any:
        import keras

        pooled = backbone.build(side, resolved)
        if spec.layer == "pooled":
            return pooled
        return keras.Model(pooled.input, pooled.get_layer("pooled").input)

    def build() -> Any:
        if spec.scales == SINGLE_SCALE:
            return build_at(image_size)
        return multi_scale_features(build_at, spec)

    return Embedder(spec, build, backend)


mobilenetv2_embedder = partial(pretrained_embedder, "mobilenetv2")
"""ImageNet MobileNetV2 (the default backbone): `pretrained_embedder` with model="mobilenetv2";
every other option passes through unchanged (give them by keyword)."""


class CombinedEmbedder(Embedder):
    """Several pretrained backbones side by side: each photo is decoded once at the largest
    part's input size, resized in the graph to each part's own, embedded by each part as it
    embeds alone (MobileNetV2 at its two scales), and the parts' unit vectors are concatenated
    and made unit length again, so the cosine is the mean of the parts' cosines.

    MobileNetV2, Lite0 and Lite2 side by side raised mAP over MobileNetV2 alone on all 13
    labelled collections measured and P@4 on 11 (docs/benchmarks.md, "Backbones side by
    side"), for the sum of their indexing times, so it is offered, not the default.
    """

    def __init__(self, spec: EmbedderSpec, parts: Sequence[Embedder], backend: str) -> None:
        super().__init__(spec, lambda: None, backend)
        self.parts = tuple(parts)

    def build_embedding_model(self) -> Any:
        import keras
        from keras import ops

        size = self.spec.image_size
        pixels = keras.Input((size, size, 3), name="pixels")
        vectors = []
        for part in self.parts:
            side = part.spec.image_size
            resized = pixels if side == size else ops.image.resize(pixels, (side, side))
            part_model = part.build_embedding_model()
            part_model.name = f"embedding_{part.spec.model}"
            vectors.append(part_model(resized))
        return keras.Model(pixels, _unit(ops.concatenate(vectors, axis=-1)), name="embedding")


def combined_embedder(
    parts: Sequence[str],
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    decoding: str = DEFAULT_DECODING,
) -> CombinedEmbedder:
    """Pretrained backbones side by side (`CombinedEmbedder`); each part at its native size
    and its own default scales, so its spec, and the combined one, say exactly what runs."""
    from foldervision.models.pretrained import COMBINED_SEPARATOR

    embedders = [
        pretrained_embedder(part, backend=backend, precision=precision, decoding=decoding)
        for part in parts
    ]
    spec = EmbedderSpec(
        model=COMBINED_SEPARATOR.join(parts),
        weights="; ".join(embedder.spec.weights for embedder in embedders),
        image_size=max(embedder.spec.image_size for embedder in embedders),
        color_mode="rgb",
        layer="; ".join(_part_layer(embedder.spec) for embedder in embedders),
        pooling=DEFAULT_POOLING,
        precision=precision,
        decoding=decoding,
    )
    return CombinedEmbedder(spec, embedders, backend)


def _part_layer(spec: EmbedderSpec) -> str:
    """One part as the combined spec records it: `mobilenetv2 out_relu 224px x1.0,0.7071`."""
    scales = ",".join(str(scale) for scale in spec.scales)
    return f"{spec.model} {spec.layer} {spec.image_size}px x{scales}"


def classifier_embedder(
    run_dir: str | os.PathLike[str],
    backend: str = DEFAULT_BACKEND,
    precision: str = DEFAULT_PRECISION,
    decoding: str = DEFAULT_DECODING,
) -> Embedder:
    """A trained classifier's penultimate layer ("features"): search adapted to its domain."""
    import keras

    from foldervision.cache import sha256_of
    from foldervision.models import get_model_entry
    from foldervision.models.classifier import trained_part
    from foldervision.models.saving import load_classifier, resolve_model_path

    model_path = resolve_model_path(run_dir)
    model, preprocessor = load_classifier(model_path)
    model = trained_part(model)  # a probe ensemble searches with its trained model's features
    feature_layer = get_model_entry(preprocessor.model_name).feature_layer
    try:
        features = model.get_layer(feature_layer).output
    except ValueError as error:
        raise ValueError(
            f"{model_path}: this model has no {feature_layer!r} layer to search with; "
            "retrain it with `foldervision train` or use --model mobilenetv2."
        ) from error
    feature_model = keras.Model(model.input, features)
    spec = EmbedderSpec(
        model=f"classifier:{preprocessor.model_name}",
        weights=f"{model_path.name} sha256:{sha256_of(model_path)}",
        image_size=int(model.input_shape[1]),
        color_mode=preprocessor.color_mode,
        layer=feature_layer,
        pooling="none",
        precision=precision,
        decoding=decoding,
    )
    return Embedder(spec, lambda: feature_model, backend)


def default_scales(model: str) -> tuple[float, ...]:
    """A new index's scales: the pretrained backbone's `search_scales`; one for anything else."""
    from foldervision.models.pretrained import PRETRAINED

    return PRETRAINED.get(model).search_scales if model in PRETRAINED else SINGLE_SCALE


def load_embedder(settings: IndexSettings) -> Embedder:
    """The embedder the index options (`--model`, `--image-size`, ... `--decoding`) describe."""
    model, image_size = settings.model, settings.image_size
    from foldervision.clip.models import is_clip_model
    from foldervision.models.pretrained import (
        COMBINED_SEPARATOR,
        PRETRAINED,
        pretrained_backbones,
    )

    if is_clip_model(model):
        return _clip_embedder(settings)
    decoding = settings.decoding or DEFAULT_DECODING
    if model in PRETRAINED:
        return pretrained_embedder(
            model,
            image_size,
            backend=settings.backend,
            precision=settings.precision,
            decoding=decoding,
            scales=settings.scales,
        )
    backbones = pretrained_backbones(model)
    if len(backbones) > 1:
        own_scales = settings.scales in (None, SINGLE_SCALE)
        fixed = {"--image-size": image_size is not None, "--scales": not own_scales}
        for option, given in fixed.items():
            if given:
                raise ValueError(
                    f"{option} does not apply to {model}: each backbone runs at its own size "
                    "and scales. Leave it out."
                )
        parts = [backbone.name for backbone in backbones]
        return combined_embedder(parts, settings.backend, settings.precision, decoding)
    if COMBINED_SEPARATOR in model and not Path(model).exists():
        raise ValueError(
            f"--model {model}: join two or more different pretrained backbones with "
            f"'{COMBINED_SEPARATOR}' ({', '.join(PRETRAINED.names())}), for example "
            "mobilenetv2+efficientnet-lite0+efficientnet-lite2."
        )
    if settings.scales not in (None, SINGLE_SCALE):
        raise ValueError(
            f"--scales applies to the pretrained backbones ({', '.join(PRETRAINED.names())}), "
            f"not {model}. Leave --scales out."
        )
    if not Path(model).exists():
        raise ValueError(
            f"{model}: no such run folder or .keras file; pass --model "
            f"{' or '.join(PRETRAINED.names())}, or a run folder made by `foldervision train`."
        )
    if image_size is not None:
        raise ValueError(
            f"--image-size does not apply to {model}: a trained model always uses the size it "
            "was trained at. Leave --image-size out."
        )
    return classifier_embedder(model, settings.backend, settings.precision, decoding)


def _clip_embedder(settings: IndexSettings) -> Embedder:
    """A CLIP model: its own input size, fp32, on ONNX Runtime (the only way it runs)."""
    from foldervision.clip.embedder import load_clip_embedder

    fixed = [
        ("--image-size", settings.image_size is not None),
        ("--precision", settings.precision != DEFAULT_PRECISION),
        ("--backend", settings.backend != "onnx"),
        ("--scales", settings.scales not in (None, SINGLE_SCALE)),
    ]
    for option, given in fixed:
        if given:
            raise ValueError(
                f"{option} does not apply to {settings.model}: a CLIP model runs at its own "
                "size, in fp32, on ONNX Runtime. Leave it out."
            )
    return load_clip_embedder(settings.model)
