"""MobileNetV2 fine-tuning end to end: two phases, the same run folder as LeNet, weights named."""

from __future__ import annotations

import json

import numpy as np

from foldervision.models import get_model_entry
from foldervision.models.classifier import find_backbone
from foldervision.models.saving import load_classifier


def test_two_phase_run_writes_the_full_run_folder(mobilenetv2_run):
    out, metrics = mobilenetv2_run
    assert {
        "model.keras",
        "metrics.json",
        "split.json",
        "history.png",
        "confusion_matrix.png",
        "report.md",
    } <= {path.name for path in out.iterdir()}
    assert [phase.name for phase in metrics.phases] == ["head", "fine_tune"]
    assert metrics.epochs == 2 and len(metrics.history["loss"]) == 2
    assert "ImageNet" in metrics.weights or "imagenet" in metrics.weights.lower()
    assert metrics.weights in (out / "report.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["val_accuracy"] > 0.5


def test_saved_classifier_keeps_rgb_preprocessing_and_classes(mobilenetv2_run, sample_digits):
    out, metrics = mobilenetv2_run
    model, preprocessor = load_classifier(out)
    assert (preprocessor.image_size, preprocessor.color_mode) == (32, "rgb")
    assert preprocessor.class_names == ["0", "1", "2"]
    pixels = preprocessor.load(sorted((sample_digits / "test" / "0").glob("*.png"))[:3]).pixels
    assert pixels.shape == (3, 32, 32, 3)
    assert np.all(pixels[..., 0] == pixels[..., 2]), "grayscale digits become 3 equal channels"


def test_phases_freeze_the_right_layers(mobilenetv2_run):
    model, _ = load_classifier(mobilenetv2_run[0])
    backbone = find_backbone(model)
    set_trainable = get_model_entry("mobilenetv2").set_trainable
    set_trainable(model, "head")
    assert not backbone.trainable_weights
    assert model.get_layer("predictions").trainable_weights
    set_trainable(model, "top:2")
    trainable = {layer.name for layer in backbone.layers if layer.trainable_weights}
    assert any(name.startswith("block_16") for name in trainable)
    assert any(name.startswith("block_15") for name in trainable)
    assert not any(name.startswith(("block_14", "Conv1", "block_0_")) for name in trainable)
    set_trainable(model, "all")
    assert len(backbone.trainable_weights) == len(backbone.weights) - 2 * sum(
        "BN" in layer.name or "bn" in layer.name for layer in backbone.layers
    ), "everything but BatchNorm moving statistics learns"
