"""Model builders in one table (`MODELS`), with how each one is frozen and fed.

How long and how fast each is trained is a recipe's business (`foldervision.recipes`).

Every builder returns a `BuiltModel`: a Keras model whose input is raw pixels in [0, 255]
(height, width, channels) and whose last layer is "predictions", plus the weights it starts from
in words. Its embedding layer is named by `ModelEntry.feature_layer`, and what learns in each
training phase is decided by the model's own freeze hook, so callers never match layer names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import TYPE_CHECKING

from foldervision.registry import Registry, import_location

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
    feature_views: int = 0
    """Head phases only: when > 0, the frozen backbone's features are computed once for this
    many (augmented) views of each training image and the head learns from them, instead of
    paying a full backbone pass per image per epoch."""
    solver: str = "adam"
    """Head phases on cached features: "adam" (epochs of Adam on a softmax head) or "probe"
    (the head fitted once as a linear probe: logistic regression, its L2 strength chosen by
    cross-validation on the training images; see foldervision.training.probe_head)."""


RANDOM_INITIALISATION = "random initialisation (trained from scratch)"
"""How metrics.json and report.md name the starting weights of a model without pretraining."""


@dataclass(frozen=True)
class BuiltModel:
    """A freshly built model and the weights it starts from, in words (for metrics and report)."""

    model: keras.Model
    weights_description: str


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model table: how an architecture is built, fed, frozen and trained."""

    name: str
    builder: str
    """"module:function" returning a BuiltModel, imported on first use so the CLI starts fast."""
    set_trainable_hook: str
    """"module:function(model, trainable)" that decides which layers learn in a phase."""
    default_image_size: int
    color_mode: str
    description: str
    feature_layer: str = "features"
    """The layer whose output is the model's embedding (what image search uses)."""
    backbone: str | None = None
    """The `models.pretrained` row it fine-tunes (the builder's first argument); None for a
    network trained from scratch."""

    @property
    def pretrained(self) -> bool:
        return self.backbone is not None

    def build(
        self, num_classes: int, image_size: int | None = None, weights: str | None = None
    ) -> BuiltModel:
        from foldervision.images import channels_for

        builder = import_location(self.builder)
        if self.backbone is not None:
            builder = partial(builder, self.backbone)  # type: ignore[arg-type]
        return builder(  # type: ignore[operator]
            num_classes=num_classes,
            image_size=image_size or self.default_image_size,
            channels=channels_for(self.color_mode),
            weights=weights,
        )

    def set_trainable(self, model: keras.Model, trainable: str) -> None:
        """Choose what learns: "all", "head" (pretrained part frozen) or "top:N" (see phases)."""
        import_location(self.set_trainable_hook)(model, trainable)  # type: ignore[operator]


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(entry: ModelEntry) -> ModelEntry:
    MODELS.register(entry.name, entry)
    return entry


def get_model_entry(name: str) -> ModelEntry:
    """The registered model called `name` (as saved in a trained model's preprocessor)."""
    _register_pretrained_classifiers()
    return MODELS.get(name)


def available_models() -> list[str]:
    _register_pretrained_classifiers()
    return MODELS.names()


register_model(
    ModelEntry(
        name="lenet",
        builder="foldervision.models.lenet:build_lenet",
        set_trainable_hook="foldervision.models.lenet:set_trainable",
        default_image_size=28,
        color_mode="grayscale",
        description="LeNet-5 trained from scratch (grayscale, 28 px).",
    )
)


@cache
def _register_pretrained_classifiers() -> None:
    """One classifier per pretrained backbone, named and described from that table
    (`models.pretrained`), so a backbone added there can be trained without a row here.
    Registered on first lookup: importing the table here would be circular (its weights
    modules import this package)."""
    from foldervision.models.pretrained import PRETRAINED

    for name in PRETRAINED:
        register_model(
            ModelEntry(
                name=name,
                builder="foldervision.models.classifier:build_pretrained_classifier",
                set_trainable_hook="foldervision.models.classifier:set_trainable",
                default_image_size=64,
                color_mode="rgb",
                description=f"{PRETRAINED.get(name).title}, ImageNet weights, fine-tuned in two "
                "phases (RGB).",
                backbone=name,
            )
        )
