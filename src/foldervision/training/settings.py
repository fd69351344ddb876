"""What the user asked for (`TrainingConfig`) and what a run will use (`Settings`).

`resolve_settings` reads the folder, picks the recipe from the data (or --recipe / --model),
lets every explicit flag win over it, and refuses what would fail later (an unknown model, a
missing folder, a run folder that would be overwritten): after it, nothing is left to decide,
and the caller can say which recipe runs before any training starts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from foldervision.datasets import LabelledFolder, scan_labelled_folder, stratified_split
from foldervision.models import ModelEntry, TrainingPhase, get_model_entry
from foldervision.recipes import (
    Recipe,
    choose_recipe,
    class_weights_for,
    describe_choice,
    get_recipe,
    profile_images,
)
from foldervision.runs import RunFolder
from foldervision.training.augmentation import AUGMENTATIONS


@dataclass(frozen=True)
class TrainingConfig:
    """What the user asked for; None leaves the choice to the recipe."""

    data: Path
    out: Path
    model: str | None = None
    """None: the recipe's model (LeNet for digits, MobileNetV2 for photos)."""
    recipe: str | None = None
    """None: chosen from the data (see foldervision.recipes)."""
    epochs: int | None = None
    head_epochs: int | None = None
    val_split: float = 0.2
    seed: int = 42
    image_size: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weights: str | None = None
    unfreeze: str | None = None
    augment: bool = True
    flip: bool | None = None
    """None: the recipe's choice (flips for photos, none for digits)."""
    overwrite: bool = False
    verbose: int | str = "auto"
    class_balance: str = "auto"
    """"auto": weight the loss when classes are uneven (see recipes.class_weights_for);
    "weights": always; "none": never."""
    ensemble: bool | None = None
    """None: the recipe's choice (the photo recipe averages with a probe on frozen pretrained
    vectors when their weights are installed); False: never; True: required."""


@dataclass(frozen=True)
class Settings:
    """Everything a run uses, decided once: the recipe with every explicit flag applied."""

    folder: LabelledFolder
    """The scanned data folder: its files, labels and class names."""
    train_indices: np.ndarray
    """Which of the folder's files train (seeded, stratified split); the rest validate."""
    validation_indices: np.ndarray
    out: Path
    overwrite: bool
    recipe: Recipe
    reason: str
    """Why this recipe, in words (for the `recipe:` line and metrics.json)."""
    model_entry: ModelEntry
    phases: tuple[TrainingPhase, ...]
    image_size: int
    batch_size: int
    augmentation: str | None
    """The augmentation style (a name in AUGMENTATIONS); None: no augmentation."""
    flip: bool
    weights: str | None
    """What the model starts from (see ModelEntry.build); "auto" for pretrained models."""
    val_split: float
    seed: int
    verbose: int
    """Keras' progress: 1 (a bar) on a terminal, 2 (a line per epoch) in a log, 0 none."""
    class_weights: dict[int, float] | None = None
    """Loss weight per class index, from the training split's counts; None: unweighted."""
    ensemble_backbones: str | None = None
    """The recipe's `ensemble_backbones` when the run uses them (weights installed, not
    --no-ensemble); None: the saved model is the trained model alone."""

    @property
    def flip_average(self) -> bool:
        """The saved model averages each image with its mirror: the recipe's choice, and only
        where mirrors are allowed (never with --no-flip)."""
        return self.recipe.flip_average and self.flip

    @property
    def recipe_line(self) -> str:
        """`recipe: NAME (why)`, the line `foldervision train` prints before training."""
        return describe_choice(self.recipe, self.reason)


def resolve_settings(config: TrainingConfig) -> Settings:
    """Pick the recipe from the data (or --recipe / --model), then let explicit flags win."""
    if config.model is not None:
        get_model_entry(config.model)  # a typo fails before any folder is read
    if config.recipe is not None:
        get_recipe(config.recipe)
    folder = scan_labelled_folder(config.data)
    profile = profile_images(folder.paths, len(folder.class_names))
    recipe, reason = choose_recipe(profile, config.recipe, config.model)
    AUGMENTATIONS.get(recipe.augmentation)  # a recipe names a registered style
    model_entry = get_model_entry(config.model or recipe.model)
    phases = phases_for(recipe, config)
    train_indices, validation_indices = stratified_split(
        folder.labels, config.val_split, config.seed
    )
    RunFolder(config.out).check_writable(config.overwrite)
    counts = np.bincount(folder.labels[train_indices], minlength=len(folder.class_names))
    class_weights, balance = class_weights_for(counts.tolist(), config.class_balance)
    if balance:
        reason = f"{reason}; {balance}"
    ensemble_backbones, ensemble_note = ensemble_for(recipe, config.ensemble)
    if ensemble_note:
        reason = f"{reason}; {ensemble_note}"
    return Settings(
        folder=folder,
        train_indices=train_indices,
        validation_indices=validation_indices,
        out=config.out,
        overwrite=config.overwrite,
        recipe=recipe,
        reason=reason,
        model_entry=model_entry,
        phases=phases,
        image_size=config.image_size or recipe.image_size,
        batch_size=config.batch_size or recipe.batch_size,
        augmentation=recipe.augmentation if config.augment else None,
        flip=recipe.flip if config.flip is None else config.flip,
        weights="auto" if config.weights is None and model_entry.pretrained else config.weights,
        val_split=config.val_split,
        seed=config.seed,
        verbose=_progress_verbosity(config.verbose),
        class_weights=class_weights,
        ensemble_backbones=ensemble_backbones,
    )


def ensemble_for(recipe: Recipe, ensemble: bool | None) -> tuple[str | None, str]:
    """The backbones the run's probe ensemble uses (None: no ensemble), and a note for the
    recipe line when the choice is not the recipe's plain default."""
    from foldervision.errors import WeightsError
    from foldervision.models.pretrained import pretrained_backbones

    if ensemble is False:
        return None, "no probe ensemble (--no-ensemble)" if recipe.ensemble_backbones else ""
    if recipe.ensemble_backbones is None:
        if ensemble:
            raise ValueError(
                f"--ensemble: the {recipe.name} recipe has no probe ensemble; "
                "use the photo recipe (--recipe photo) or leave --ensemble out."
            )
        return None, ""
    missing = []
    for backbone in pretrained_backbones(recipe.ensemble_backbones):
        try:
            backbone.resolve("auto")
        except WeightsError:
            missing.append(backbone.name)
    if not missing:
        return recipe.ensemble_backbones, ""
    install = f"foldervision weights install --model {recipe.ensemble_backbones}"
    if ensemble:
        raise ValueError(
            f"--ensemble needs the pretrained weights of {', '.join(missing)}; "
            f"install them with: {install}"
        )
    return None, f"no probe ensemble ({', '.join(missing)} weights not installed: {install})"


def phases_for(recipe: Recipe, config: TrainingConfig) -> tuple[TrainingPhase, ...]:
    """The recipe's phases, with the user's --epochs / --head-epochs / --learning-rate applied.

    --epochs sets the last phase (the whole run for one-phase models); --head-epochs the first
    phase of a pretrained model (as epochs of Adam, also where the recipe fits the head as a
    linear probe; 0 skips it); --unfreeze how many top blocks the fine-tuning phase trains.
    """
    phases = list(recipe.phases)
    if config.epochs is not None:
        if config.epochs < 1:
            raise ValueError(f"--epochs must be at least 1 (got {config.epochs}).")
        phases[-1] = replace(phases[-1], epochs=config.epochs)
    if config.head_epochs is not None and len(phases) > 1:
        # A probe-fitted head has no epochs: --head-epochs N trains it by N epochs of Adam.
        phases[0] = replace(phases[0], epochs=config.head_epochs, solver="adam")
    if config.learning_rate is not None:
        phases[-1] = replace(phases[-1], learning_rate=config.learning_rate)
    if config.unfreeze is not None and len(phases) > 1:
        trainable = "all" if config.unfreeze == "all" else f"top:{int(config.unfreeze)}"
        phases[-1] = replace(phases[-1], trainable=trainable)
    return tuple(phase for phase in phases if phase.epochs > 0)


def _progress_verbosity(verbose: int | str) -> int:
    """ "auto": a progress bar for a person at a terminal, one line per epoch for a log file."""
    if verbose == "auto":
        return 1 if sys.stderr.isatty() else 2
    return int(verbose)
