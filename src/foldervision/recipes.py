"""Training recipes, and how `train` picks one by looking at the data.

A recipe is every training default in one place: the model, its input size, the augmentation,
the phases and the batch size. Small grey images (digits) keep the fast digit recipe; colour or
large images (photos) get the photo recipe, which suits ImageNet weights. Explicit command-line
flags always win over the recipe.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from foldervision.models import TrainingPhase
from foldervision.registry import Registry

PROFILE_SAMPLE = 300
"""Files whose headers are read to profile a folder (spread over the classes)."""

DIGIT_MAX_SIDE = 64
"""Grey images whose typical longer side is at most this are treated like digits."""

GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


@dataclass(frozen=True)
class Recipe:
    """Every training default for one kind of data and one model."""

    name: str
    kind: str
    """The data it is meant for: "digits" or "photo"."""
    model: str
    image_size: int
    augmentation: str
    """The name of a style in `foldervision.training.augmentation.AUGMENTATIONS`: "digits"
    (small shifts, rotations, zoom, contrast) or "photo" (crops, colour)."""
    flip: bool
    phases: tuple[TrainingPhase, ...]
    batch_size: int
    description: str
    fine_tuned_share: float | None = None
    """With a probe-fitted head then fine-tuning: keep the weight-space average of the two
    models, this share from the last fine-tuned epoch and the rest from the head alone
    (WiSE-FT, Wortsman et al. 2022), instead of the best epoch on a small validation split.
    None: the best validation epoch."""
    flip_average: bool = False
    """Predictions average the logits of an image and its mirror (saved in model.keras)."""
    ensemble_backbones: str | None = None
    """Pretrained backbones (an `index --model` name, "a+b" side by side) whose frozen
    retrieval vectors get a linear probe on the training photos; the saved model averages the
    trained model's class probabilities with the probe's (`training.ensemble`). None: none."""


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    RECIPES.register(recipe.name, recipe)
    return recipe


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; an unknown name raises one line listing the known ones."""
    return RECIPES.get(name)


register_recipe(
    Recipe(
        name="digits",
        kind="digits",
        model="lenet",
        image_size=28,
        augmentation="digits",
        flip=False,
        phases=(TrainingPhase("train", epochs=10, learning_rate=1e-3, schedule="constant"),),
        batch_size=64,
        description="LeNet-5 from scratch, 28 px grey; no flips (a mirrored 2 is not a 2).",
    )
)

register_recipe(
    Recipe(
        name="digits-mobilenetv2",
        kind="digits",
        model="mobilenetv2",
        image_size=64,
        augmentation="digits",
        flip=False,
        phases=(
            TrainingPhase("head", epochs=2, learning_rate=1e-3, trainable="head"),
            TrainingPhase("fine_tune", epochs=3, learning_rate=3e-4, trainable="top:6"),
        ),
        batch_size=64,
        description="MobileNetV2 (ImageNet) at 64 px: head, then the top 6 blocks.",
    )
)

register_recipe(
    Recipe(
        name="photo",
        kind="photo",
        model="mobilenetv2",
        image_size=160,
        augmentation="photo",
        flip=True,
        phases=(
            TrainingPhase(
                "head",
                epochs=1,
                learning_rate=1e-3,
                trainable="head",
                feature_views=2,
                solver="probe",
            ),
            TrainingPhase("fine_tune", epochs=4, learning_rate=3e-4, trainable="top:6"),
        ),
        batch_size=32,
        description="MobileNetV2 (ImageNet) at 160 px: the head fitted as a linear probe on "
        "cached features of two views (logistic regression, C by cross-validation), then the "
        "top 6 blocks fine-tuned from it; the kept model averages the weights of the head "
        "alone (1/4) and the last fine-tuned epoch (3/4), and predicts from each photo and its "
        "mirror (LP-FT, WiSE-FT, flip averaging), its probabilities averaged with a linear "
        "probe's on MobileNetV2, EfficientNet-Lite0 and Lite2 vectors side by side "
        "(benchmarks/photo_training_variants.py).",
        fine_tuned_share=0.75,
        flip_average=True,
        ensemble_backbones="mobilenetv2+efficientnet-lite0+efficientnet-lite2",
    )
)

for _lite in ("efficientnet-lite0", "efficientnet-lite2"):
    register_recipe(
        Recipe(
            name=f"photo-{_lite}",
            kind="photo",
            model=_lite,
            image_size=160,
            augmentation="photo",
            flip=True,
            phases=(
                TrainingPhase(
                    "head", epochs=30, learning_rate=1e-3, trainable="head", feature_views=2
                ),
                TrainingPhase("fine_tune", epochs=4, learning_rate=3e-4, trainable="top:6"),
            ),
            batch_size=32,
            description=f"{_lite} (ImageNet) with the photo recipe's size and augmentation, "
            "its head trained by Adam on cached features, then the top 6 blocks fine-tuned "
            "(the photo recipe's phases before its linear-probe head; not tuned for this "
            "backbone).",
        )
    )


@dataclass(frozen=True)
class DataProfile:
    """What a folder's image headers say: typical size, colour or grey, images per class."""

    width: int
    height: int
    colour: bool
    images_per_class: int
    sampled: int

    @property
    def kind(self) -> str:
        small = max(self.width, self.height) <= DIGIT_MAX_SIDE
        return "digits" if small and not self.colour else "photo"

    def describe(self) -> str:
        colour = "colour" if self.colour else "grey"
        return (
            f"median {self.width}x{self.height} px, {colour}, {self.images_per_class} images/class"
        )


def profile_images(
    paths: list[Path], class_count: int, sample: int = PROFILE_SAMPLE
) -> DataProfile:
    """Read only the headers (Pillow's open does not decode) of up to `sample` files, evenly
    spread over the sorted list, so profiling a big folder costs well under a second."""
    step = max(1, len(paths) // sample)
    widths, heights, colour_votes = [], [], []
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as image:
                widths.append(image.width)
                heights.append(image.height)
                colour_votes.append(image.mode not in GREY_MODES)
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable files are reported (and skipped) when they are decoded
    if not widths:
        return DataProfile(0, 0, True, len(paths) // max(1, class_count), 0)
    return DataProfile(
        width=int(statistics.median(widths)),
        height=int(statistics.median(heights)),
        colour=sum(colour_votes) > len(colour_votes) / 2,
        images_per_class=round(len(paths) / max(1, class_count)),
        sampled=len(widths),
    )


def choose_recipe(
    profile: DataProfile, recipe: str | None = None, model: str | None = None
) -> tuple[Recipe, str]:
    """The recipe for this data (or the one asked for) and why, in words.

    `--recipe` names one outright. Otherwise the data's kind decides; `--model` narrows the
    choice to that model's recipes, preferring one made for this kind of data and, among
    those, the recipe named after the kind ("digits", "photo").
    """
    if recipe is not None:
        return get_recipe(recipe), f"--recipe {recipe}; {profile.describe()}"
    candidates = [entry for entry in all_recipes() if model in (None, entry.model)]
    if not candidates:
        from foldervision.models import get_model_entry

        get_model_entry(model or "")  # raises the registry's own "unknown model" message
        raise ValueError(f"No recipe trains {model!r}.")
    matching = [entry for entry in candidates if entry.kind == profile.kind] or candidates
    chosen = min(matching, key=lambda entry: entry.name != profile.kind)
    reason = profile.describe()
    if model is not None:
        reason = f"--model {model}; {reason}"
    return chosen, reason


UNEVEN_RATIO = 3.0
"""Classes are uneven when the largest has more than this many times the smallest's images:
then `--class-balance auto` weights the loss so each class counts as much as the others."""

CLASS_BALANCES = ("auto", "weights", "none")


def class_weights_for(
    counts: list[int], balance: str = "auto"
) -> tuple[dict[int, float] | None, str]:
    """Loss weights per class index (None: unweighted) and the choice in words.

    "weights" and uneven classes under "auto" get `total / (classes x count)` per class (each
    class then weighs as much in the loss as in a balanced folder); "none" never weights.
    """
    if balance not in CLASS_BALANCES:
        raise ValueError(
            f"Unknown --class-balance {balance!r}; use one of: {', '.join(CLASS_BALANCES)}."
        )
    smallest, largest = min(counts), max(counts)
    uneven = largest > UNEVEN_RATIO * smallest
    shape = f"uneven classes ({smallest} to {largest} images)" if uneven else ""
    if balance == "none" or (balance == "auto" and not uneven):
        return None, f"{shape}, not weighted (--class-balance none)" if uneven else ""
    total = sum(counts)
    weights = {index: total / (len(counts) * count) for index, count in enumerate(counts)}
    if balance == "weights":
        return weights, "class-weighted loss (--class-balance weights)"
    return weights, f"{shape}: class-weighted loss"


def recipe_names() -> list[str]:
    return RECIPES.names()


def all_recipes() -> list[Recipe]:
    """Every registered recipe, by name."""
    return [RECIPES.get(name) for name in RECIPES.names()]


def describe_choice(recipe: Recipe, reason: str) -> str:
    """The one line `foldervision train` prints to stderr before training."""
    return f"recipe: {recipe.name} ({reason})"
