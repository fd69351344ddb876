"""Augmentation styles: small geometric and photometric changes that keep the label.

Every style is registered here, once, under the name a recipe gives in `Recipe.augmentation`;
a recipe naming a style that is not here is refused when its settings are resolved.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from foldervision.registry import Registry

AugmentationStyle = Callable[[int], list[keras.layers.Layer]]
"""seed -> the style's random layers, each seeded from it."""

AUGMENTATIONS: Registry[AugmentationStyle] = Registry("augmentation style")


def digit_layers(seed: int) -> list[keras.layers.Layer]:
    """Shifts, small rotations, zoom and contrast: what handwriting varies by."""
    return [
        keras.layers.RandomRotation(0.04, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
        keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
    ]


def photo_layers(seed: int) -> list[keras.layers.Layer]:
    """Random crops (zooming in up to 25%), small shifts, brightness and contrast."""
    return [
        keras.layers.RandomZoom((-0.25, 0.0), fill_mode="reflect", seed=seed),
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 2),
        keras.layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 3),
    ]


AUGMENTATIONS.register("digits", digit_layers)
AUGMENTATIONS.register("photo", photo_layers)


def build_augmentation(style: str, flip: bool, seed: int) -> keras.Sequential:
    """The style's layers, plus horizontal flips when asked (never by default for digits: a
    mirrored 2 is not a 2)."""
    augmentation_layers = AUGMENTATIONS.get(style)(seed)
    if flip:
        augmentation_layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))
    return keras.Sequential(augmentation_layers, name="augmentation")
