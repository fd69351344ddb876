"""Recipes: chosen from the data, overridden by flags, and each one trainable as registered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foldervision.datasets import scan_labelled_folder
from foldervision.images import save_image_atomic
from foldervision.models import get_model_entry
from foldervision.models.saving import load_classifier
from foldervision.recipes import RECIPES, choose_recipe, get_recipe, profile_images
from foldervision.runs import RunMetrics
from foldervision.training import TrainingConfig, resolve_settings, train
from foldervision.training.augmentation import AUGMENTATIONS, build_augmentation
from foldervision.training.fitting import head_model

PHOTO_SIDE = 48


@pytest.fixture(scope="module")
def photo_classes(tmp_path_factory) -> object:
    """Two classes of real colour photos (crops of skimage's cat and coffee cup), 10 each."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    generator = np.random.default_rng(0)
    for name, picture in (("cat", skimage.data.chelsea()), ("coffee", skimage.data.coffee())):
        height, width = picture.shape[:2]
        for index in range(10):
            top = int(generator.integers(0, height // 3))
            left = int(generator.integers(0, width // 3))
            crop = picture[top : top + 2 * height // 3, left : left + 2 * width // 3]
            from PIL import Image

            small = np.asarray(Image.fromarray(crop).resize((PHOTO_SIDE, PHOTO_SIDE)))
            save_image_atomic(small, folder / name / f"{name}_{index}.jpg")
    return folder


def _profile(folder):
    labelled = scan_labelled_folder(folder)
    return profile_images(labelled.paths, len(labelled.class_names))


def test_digits_keep_the_digit_recipe_and_photos_get_the_photo_recipe(sample_digits, photo_classes):
    digits, reason = choose_recipe(_profile(sample_digits / "train"))
    assert (digits.name, digits.model, digits.image_size, digits.flip) == (
        "digits",
        "lenet",
        28,
        False,
    )
    assert reason == "median 28x28 px, grey, 200 images/class"
    photo, reason = choose_recipe(_profile(photo_classes))
    assert (photo.name, photo.model, photo.flip) == ("photo", "mobilenetv2", True)
    assert reason == f"median {PHOTO_SIDE}x{PHOTO_SIDE} px, colour, 10 images/class"


def test_large_grey_images_are_photos(tmp_path):
    import skimage.data

    for name in ("a", "b"):
        for index in range(2):
            save_image_atomic(skimage.data.camera()[::4, ::4], tmp_path / name / f"{index}.png")
    profile = _profile(tmp_path)
    assert not profile.colour and profile.kind == "photo"


def test_model_and_recipe_options_override_the_data(sample_digits, photo_classes):
    digits = _profile(sample_digits / "train")
    recipe, reason = choose_recipe(digits, model="mobilenetv2")
    assert recipe.name == "digits-mobilenetv2" and reason.startswith("--model mobilenetv2; ")
    assert choose_recipe(_profile(photo_classes), model="lenet")[0].name == "digits"
    recipe, reason = choose_recipe(digits, recipe="photo")
    assert recipe.name == "photo" and reason.startswith("--recipe photo; ")
    with pytest.raises(ValueError, match="digits-mobilenetv2"):
        get_recipe("fancy")


def test_a_recipe_naming_an_unregistered_augmentation_style_is_refused(
    sample_digits, tmp_path, monkeypatch
):
    from dataclasses import replace

    import foldervision.recipes as recipes
    from foldervision.registry import Registry

    swirls = replace(get_recipe("digits"), name="swirls", augmentation="swirls")
    monkeypatch.setattr(recipes, "RECIPES", Registry("recipe"))
    recipes.register_recipe(swirls)
    config = TrainingConfig(data=sample_digits / "test", out=tmp_path / "run", recipe="swirls")
    with pytest.raises(ValueError, match="Unknown augmentation style 'swirls'; choose one of"):
        resolve_settings(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_fits_its_model(name):
    """Its model exists and accepts every phase's freezing; its augmentation keeps shapes."""
    recipe = get_recipe(name)
    assert recipe.augmentation in AUGMENTATIONS
    spec = get_model_entry(recipe.model)
    size = 32 if spec.pretrained else recipe.image_size
    model = spec.build(num_classes=3, image_size=size, weights="none").model
    for phase in recipe.phases:
        spec.set_trainable(model, phase.trainable)
        assert model.trainable_weights, f"{phase.name} trains nothing"
        assert phase.feature_views == 0 or phase.trainable == "head"
    channels = model.input_shape[-1]
    pixels = np.full((2, size, size, channels), 128, dtype="float32")
    augmented = build_augmentation(recipe.augmentation, recipe.flip, seed=0)(pixels, training=True)
    assert augmented.shape == pixels.shape
    assert recipe.kind != "digits" or not recipe.flip, "a mirrored 2 is not a 2"


def test_head_model_computes_the_classifier_from_its_features():
    spec = get_model_entry("lenet")
    model = spec.build(num_classes=3).model
    pixels = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    import keras

    features = keras.Model(model.input, model.get_layer(spec.feature_layer).output)(pixels)
    np.testing.assert_allclose(
        head_model(model, spec.feature_layer)(features), model(pixels), atol=1e-6
    )


def test_photo_recipe_end_to_end_records_the_recipe(photo_classes, tmp_path, capsys):
    """Photo recipe with an Adam head (--head-epochs: cached features, then fine-tuning) at a
    test-sized input."""
    out = tmp_path / "run"
    settings = resolve_settings(
        TrainingConfig(
            data=photo_classes, out=out, image_size=32, head_epochs=2, epochs=1, seed=1, verbose=0
        )
    )
    assert settings.recipe_line == (
        f"recipe: photo (median {PHOTO_SIDE}x{PHOTO_SIDE} px, colour, 10 images/class)"
    )
    metrics = train(settings)
    assert "recipe:" not in capsys.readouterr().err, "the library prints no recipe line"
    assert (metrics.recipe, metrics.model, metrics.flip) == ("photo", "mobilenetv2", True)
    assert [phase.name for phase in metrics.phases] == ["head", "fine_tune"]
    assert metrics.phases[0].feature_views > 1
    assert len(metrics.history["val_accuracy"]) == 3
    assert "recipe: photo" in (out / "report.md").read_text()
    # The saved model, fed raw files, reproduces the validation accuracy train measured.
    model, preprocessor = load_classifier(out)
    split = json.loads((out / "split.json").read_text())
    pixels = preprocessor.load([photo_classes / path for path, _ in split["validation"]]).pixels
    predicted = np.asarray(model(pixels.astype("float32"))).argmax(axis=1)
    labels = np.array([label for _, label in split["validation"]])
    assert (predicted == labels).mean() == pytest.approx(metrics.val_accuracy)
    assert metrics.history["loss"][1] < metrics.history["loss"][0], "the head learns"


def test_photo_defaults_fit_the_head_as_a_probe_then_keep_its_average_with_fine_tuning(
    photo_classes, tmp_path
):
    """LP-FT: the head is the probe's logistic regression and fine-tuning starts from it; the
    run keeps the weight average of the two (tests/training/test_kept_model.py checks the
    weights), not an epoch chosen on the small validation split, and says so."""
    out = tmp_path / "run"
    settings = resolve_settings(
        TrainingConfig(data=photo_classes, out=out, image_size=32, epochs=2, seed=1, verbose=0)
    )
    assert [(phase.name, phase.solver) for phase in settings.phases] == [
        ("head", "probe"),
        ("fine_tune", "adam"),
    ]
    metrics = train(settings)
    head_only, *fine_tuned = metrics.history["val_accuracy"]
    assert len(fine_tuned) == 2
    assert head_only >= 0.75, "the probe head alone separates a cat from a coffee cup"
    assert metrics.best_epoch == 3
    assert metrics.head_choice.startswith("fitted as a linear probe, C=")
    assert metrics.head_choice.endswith("75% fine-tuned epoch 3 (WiSE-FT)")
    assert f"- head: {metrics.head_choice}" in (out / "report.md").read_text()
    # --head-epochs asks for epochs of Adam instead of the probe fit.
    adam = resolve_settings(
        TrainingConfig(data=photo_classes, out=out, head_epochs=3, overwrite=True)
    )
    assert (adam.phases[0].solver, adam.phases[0].epochs) == ("adam", 3)


def test_flags_win_over_the_recipe(photo_classes, tmp_path):
    config = TrainingConfig(
        data=photo_classes,
        out=tmp_path / "run",
        model="lenet",
        flip=True,
        image_size=20,
        batch_size=8,
        epochs=1,
        verbose=0,
    )
    metrics = train(resolve_settings(config))
    assert (metrics.recipe, metrics.image_size, metrics.batch_size) == ("digits", 20, 8)
    assert metrics.flip is True and metrics.recipe_reason.startswith("--model lenet; ")


def test_streaming_from_files_trains_exactly_like_holding_pixels(
    sample_digits, tmp_path, monkeypatch
):
    """A folder too big for memory is decoded batch by batch, with the very same result."""
    import foldervision.training.data as training_data

    def run(name: str) -> RunMetrics:
        config = TrainingConfig(
            data=sample_digits / "test", out=tmp_path / name, epochs=1, seed=3, verbose=0
        )
        return train(resolve_settings(config))

    in_memory = run("memory")
    monkeypatch.setattr(training_data, "IN_MEMORY_PIXEL_BYTES", 0)
    streamed = run("streamed")
    assert streamed.history == in_memory.history
    assert streamed.confusion_matrix == in_memory.confusion_matrix
