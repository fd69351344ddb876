"""The photo recipe's kept model: the weight average of the probe-fitted head alone and the last
fine-tuned epoch (WiSE-FT), predicting from each photo and its mirror; saved, exported to ONNX
and explained like any other run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_recipes import photo_classes  # noqa: F401  (the fixture: real cat / coffee crops)

import foldervision.training.fitting as fitting
from foldervision.explain import GradCam
from foldervision.inference import _onnx_export, probability_function
from foldervision.models.classifier import FLIP_AVERAGE_LAYER, without_flip_average
from foldervision.models.saving import load_classifier
from foldervision.training import TrainingConfig, resolve_settings, train


@pytest.fixture(scope="module")
def averaged_run(photo_classes, tmp_path_factory, request):  # noqa: F811
    """A default photo run at a test-sized input, recording the two models it averaged."""
    averaged: list[tuple[list[np.ndarray], list[np.ndarray], float]] = []
    real = fitting.average_weights

    def recording(start, end, share):
        averaged.append(([np.copy(w) for w in start], [np.copy(w) for w in end], share))
        return real(start, end, share)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(fitting, "average_weights", recording)
    out = tmp_path_factory.mktemp("runs") / "photo"
    try:
        settings = resolve_settings(
            TrainingConfig(
                data=photo_classes,
                out=out,
                image_size=32,
                epochs=2,
                seed=1,
                verbose=0,
                ensemble=False,  # the trained model alone (test_probe_ensemble.py: with it)
            )
        )
        metrics = train(settings)
    finally:
        monkeypatch.undo()
    return out, metrics, averaged


def _pixels(run, folder, side: str) -> tuple[np.ndarray, np.ndarray]:
    model, preprocessor = load_classifier(run)
    split = json.loads((run / "split.json").read_text())
    pixels = preprocessor.load([folder / path for path, _ in split[side]]).pixels
    return pixels.astype("float32"), np.array([label for _, label in split[side]])


def test_the_saved_model_is_the_weight_average_of_head_alone_and_last_fine_tuned_epoch(
    averaged_run,
    photo_classes,  # noqa: F811
):
    run, metrics, averaged = averaged_run
    assert len(averaged) == 1, "one average, after fine-tuning"
    head_alone, fine_tuned, share = averaged[0]
    assert share == 0.75
    model, _ = load_classifier(run)
    kernel = model.get_layer("predictions").get_weights()[0]
    index = next(i for i, w in enumerate(head_alone) if w.shape == kernel.shape)
    assert not np.allclose(head_alone[index], fine_tuned[index]), "fine-tuning moved the head"
    np.testing.assert_allclose(
        kernel, 0.25 * head_alone[index] + 0.75 * fine_tuned[index], rtol=1e-5, atol=1e-6
    )
    assert metrics.best_epoch == len(metrics.history["val_accuracy"]) == 3
    assert "25% head alone, 75% fine-tuned epoch 3 (WiSE-FT)" in metrics.head_choice
    report = (run / "report.md").read_text()
    assert metrics.head_choice in report
    assert metrics.flip_average and "mirror's logits averaged" in report
    # The validation accuracy train reports is the saved model's on the raw files.
    pixels, labels = _pixels(run, photo_classes, "validation")
    predicted = np.asarray(model(pixels)).argmax(axis=1)
    assert (predicted == labels).mean() == pytest.approx(metrics.val_accuracy)


def test_predictions_average_the_logits_of_a_photo_and_its_mirror(averaged_run, photo_classes):  # noqa: F811
    run, _, _ = averaged_run
    model, _ = load_classifier(run)
    assert FLIP_AVERAGE_LAYER in [layer.name for layer in model.layers]
    one_view = without_flip_average(model)
    pixels, _ = _pixels(run, photo_classes, "train")
    mirrored = pixels[:, :, ::-1].copy()
    both = np.asarray(model(pixels))
    plain, mirror = np.log(np.asarray(one_view(pixels))), np.log(np.asarray(one_view(mirrored)))
    assert not np.allclose(plain, mirror, atol=1e-3), "the two views differ"
    mean_logits = (plain + mirror) / 2
    expected = np.exp(mean_logits) / np.exp(mean_logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(both, expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model(mirrored)), both, atol=1e-5)


def test_onnx_export_and_grad_cam_read_the_flip_averaged_model(averaged_run, photo_classes):  # noqa: F811
    run, _, _ = averaged_run
    model, _ = load_classifier(run)
    pixels, _ = _pixels(run, photo_classes, "validation")
    assert _onnx_export(run / "model.keras") is not None, "exported, not the Keras fallback"
    onnx, _ = probability_function(run, use_onnx=True)
    np.testing.assert_allclose(onnx(pixels.astype("uint8")), np.asarray(model(pixels)), atol=1e-4)
    explanations = GradCam(model)(pixels.astype("uint8"))
    one_view = np.asarray(without_flip_average(model)(pixels)).argmax(axis=1)
    assert [explanation.label for explanation in explanations] == one_view.tolist()
