"""Model builders behind one small registry, with how each one is trained and fed.

Every builder returns a Keras model whose input is raw pixels in [0, 255] (height, width,
channels) and whose last two layers are named "features" (the embedding) and "predictions".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class TrainingPhase:
    """One stretch of training: how long, how fast, and which part of the model learns."""

    name: str
    epochs: int
    learning_rate: float
    trainable: str = "all"
    """"all", or "head" (pretrained base frozen), or "top:N" (the base's last N blocks learn)."""
    schedule: str = "cosine"
    """"cosine" (decays to 1% of learning_rate over the phase) or "constant"."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model: how to build it, feed it and train it."""

    name: str
    builder: str
    """"module:function" of the builder, imported on first use so that the CLI starts fast."""
    default_image_size: int
    color_mode: str
    phases: tuple[TrainingPhase, ...]
    batch_size: int
    pretrained: bool
    description: str

    def build(
        self, num_classes: int, image_size: int | None = None, weights: str | None = None
    ) -> keras.Model:
        from foldervision.images import channels_for

        module_name, function_name = self.builder.split(":")
        builder = getattr(importlib.import_module(module_name), function_name)
        return builder(
            num_classes=num_classes,
            image_size=image_size or self.default_image_size,
            channels=channels_for(self.color_mode),
            weights=weights,
        )


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; choose one of: {', '.join(available_models())}.")
    return _REGISTRY[name]


def available_models() -> list[str]:
    return sorted(_REGISTRY)


register_model(
    ModelSpec(
        name="lenet",
        builder="foldervision.models.lenet:build_lenet",
        default_image_size=28,
        color_mode="grayscale",
        phases=(TrainingPhase("train", epochs=10, learning_rate=1e-3, schedule="constant"),),
        batch_size=64,
        pretrained=False,
        description="LeNet-5 trained from scratch (grayscale, 28 px).",
    )
)


register_model(
    ModelSpec(
        name="mobilenetv2",
        builder="foldervision.models.classifier:build_mobilenetv2_classifier",
        default_image_size=64,
        color_mode="rgb",
        phases=(
            TrainingPhase("head", epochs=2, learning_rate=1e-3, trainable="head"),
            TrainingPhase("fine_tune", epochs=3, learning_rate=3e-4, trainable="top:6"),
        ),
        batch_size=64,
        pretrained=True,
        description="MobileNetV2, ImageNet weights, fine-tuned in two phases (RGB).",
    )
)
