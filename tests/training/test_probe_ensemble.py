"""The photo recipe's saved model: the trained model's class probabilities averaged with a linear
probe's on frozen MobileNetV2 + EfficientNet-Lite0 + Lite2 vectors of the training photos; one
graph that predict, evaluate, export, Grad-CAM and `index --model RUN` all read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_recipes import photo_classes  # noqa: F401  (the fixture: real cat / coffee crops)
from user_process import run_cli

from foldervision.errors import WeightsError
from foldervision.explain import GradCam
from foldervision.inference import _onnx_export, probability_function
from foldervision.models.classifier import PROBE_LAYER, trained_part
from foldervision.models.pretrained import PretrainedBackbone
from foldervision.models.saving import load_classifier
from foldervision.recipes import get_recipe
from foldervision.retrieval.embedder import classifier_embedder, load_embedder
from foldervision.retrieval.settings import IndexSettings
from foldervision.training import TrainingConfig, resolve_settings, train
from foldervision.training.ensemble import fit_vector_probe

BACKBONES = get_recipe("photo").ensemble_backbones


@pytest.fixture(scope="module")
def ensemble_run(photo_classes, tmp_path_factory):  # noqa: F811
    """A default photo run (test-sized trained model: 32 px, one fine-tuning epoch)."""
    out = tmp_path_factory.mktemp("runs") / "ensemble"
    settings = resolve_settings(
        TrainingConfig(data=photo_classes, out=out, image_size=32, epochs=1, seed=2, verbose=0)
    )
    assert settings.ensemble_backbones == BACKBONES
    return out, train(settings)


def _split(run, folder, side: str) -> tuple[list, np.ndarray]:
    split = json.loads((run / "split.json").read_text())
    return [folder / path for path, _ in split[side]], np.array([label for _, label in split[side]])


def test_the_probe_is_fitted_on_the_training_photos_vectors_only(ensemble_run, photo_classes):  # noqa: F811
    run, metrics = ensemble_run
    model, preprocessor = load_classifier(run)
    assert preprocessor.image_size == 260, "the largest backbone's input (Lite2)"
    assert int(trained_part(model).input_shape[1]) == 32, "the trained model keeps its size"
    embedder = load_embedder(IndexSettings(photo_classes, model=BACKBONES))
    paths, labels = _split(run, photo_classes, "train")
    vectors = np.concatenate([batch.vectors for batch in embedder.embed_files(paths)])
    expected = fit_vector_probe(vectors, labels, None, seed=2)
    kernel, bias = model.get_layer(PROBE_LAYER).get_weights()
    np.testing.assert_allclose(kernel, expected.kernel, atol=1e-5)
    np.testing.assert_allclose(bias, expected.bias, atol=1e-5)
    assert f"C={expected.C:.3g} by cross-validation" in metrics.ensemble
    assert f"held-out score {expected.cv_accuracy:.1%}" in metrics.ensemble
    assert f"- ensemble: {metrics.ensemble}" in (run / "report.md").read_text()
    assert metrics.parameters == model.count_params() > trained_part(model).count_params()
    table = run_cli("compare", run).stdout
    assert f"| {run} | mobilenetv2 + probe ensemble | 32 px |" in table


def test_predictions_are_the_mean_of_the_trained_models_and_the_probes(
    ensemble_run,
    photo_classes,  # noqa: F811
):
    import keras

    run, metrics = ensemble_run
    model, preprocessor = load_classifier(run)
    paths, labels = _split(run, photo_classes, "validation")
    pixels = preprocessor.load(paths).pixels.astype("float32")
    resized = keras.ops.image.resize(pixels, (32, 32))
    trained = np.asarray(trained_part(model)(resized))
    embedding = model.get_layer("frozen_embedding")
    kernel, bias = model.get_layer(PROBE_LAYER).get_weights()
    logits = np.asarray(embedding(pixels)) @ kernel + bias
    probe = np.exp(logits - logits.max(axis=1, keepdims=True))
    probe /= probe.sum(axis=1, keepdims=True)
    assert np.abs(trained - probe).max() > 1e-3, "two different models"
    ensemble = np.asarray(model(pixels))
    np.testing.assert_allclose(ensemble, (trained + probe) / 2, atol=1e-5)
    # The validation accuracy train reports is the saved ensemble's on the raw files.
    assert (ensemble.argmax(axis=1) == labels).mean() == pytest.approx(metrics.val_accuracy)


def test_onnx_grad_cam_and_search_read_the_ensemble(ensemble_run, photo_classes):  # noqa: F811
    run, _ = ensemble_run
    model, preprocessor = load_classifier(run)
    paths, _ = _split(run, photo_classes, "validation")
    pixels = preprocessor.load(paths).pixels
    assert _onnx_export(run / "model.keras") is not None, "exported, not the Keras fallback"
    onnx, _ = probability_function(run, use_onnx=True)
    np.testing.assert_allclose(onnx(pixels), np.asarray(model(pixels.astype("float32"))), atol=1e-4)
    # The heatmap is of the class and confidence the ensemble predicts: what `predict` prints
    # beside it. It mixes the trained model's map with the probe's.
    every_path = paths + _split(run, photo_classes, "train")[0]
    every_pixel = preprocessor.load(every_path).pixels
    explanations = GradCam(model)(every_pixel)
    assert explanations[0].heatmap.shape == (260, 260)
    import keras

    ensemble = np.asarray(model(every_pixel.astype("float32")))
    assert [explanation.label for explanation in explanations] == ensemble.argmax(1).tolist()
    confidences = [explanation.confidence for explanation in explanations]
    np.testing.assert_allclose(confidences, ensemble.max(axis=1), atol=1e-5)
    resized = keras.ops.image.resize(every_pixel.astype("float32"), (32, 32))
    trained_labels = np.asarray(trained_part(model)(resized)).argmax(axis=1)
    disagree = np.flatnonzero(trained_labels != ensemble.argmax(1))
    assert len(disagree) > 0, "photos where the trained model and the ensemble disagree"
    own_class = GradCam(trained_part(model))(every_pixel)  # the trained model's own choice
    for index in disagree:
        assert own_class[index].label == trained_labels[index] != explanations[index].label
        assert not np.allclose(own_class[index].heatmap, explanations[index].heatmap)
    assert all(item.heatmap.max() == pytest.approx(1.0) for item in explanations)
    # `index --model RUN` searches with the trained model's features, at its own size.
    embedder = classifier_embedder(run)
    assert embedder.spec.image_size == 32
    (batch,) = list(embedder.embed_files(paths[:2]))
    assert batch.vectors.shape[0] == 2


def test_no_ensemble_saves_the_trained_model_alone_and_says_so(photo_classes, tmp_path):  # noqa: F811
    settings = resolve_settings(
        TrainingConfig(data=photo_classes, out=tmp_path / "run", ensemble=False)
    )
    assert settings.ensemble_backbones is None
    assert settings.recipe_line.endswith("; no probe ensemble (--no-ensemble))")


def test_missing_weights_turn_the_ensemble_off_with_a_note_or_fail_when_asked_for(
    photo_classes,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    real = PretrainedBackbone.resolve

    def without_lite2(self, weights="auto"):
        if self.name == "efficientnet-lite2":
            raise WeightsError("efficientnet-lite2 needs its pretrained weights")
        return real(self, weights)

    monkeypatch.setattr(PretrainedBackbone, "resolve", without_lite2)
    settings = resolve_settings(TrainingConfig(data=photo_classes, out=tmp_path / "run"))
    assert settings.ensemble_backbones is None
    assert "no probe ensemble (efficientnet-lite2 weights not installed: " in settings.reason
    assert f"foldervision weights install --model {BACKBONES}" in settings.reason
    needed = "--ensemble needs the pretrained weights of efficientnet-lite2"
    with pytest.raises(ValueError, match=needed):
        resolve_settings(TrainingConfig(data=photo_classes, out=tmp_path / "run", ensemble=True))


def test_ensemble_on_a_recipe_without_one_is_one_clear_error(sample_digits, tmp_path):
    with pytest.raises(ValueError, match="the digits recipe has no probe ensemble"):
        resolve_settings(
            TrainingConfig(data=sample_digits / "train", out=tmp_path / "run", ensemble=True)
        )


def _in_quadrants(photos: np.ndarray, side: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Each photo shrunk to under a quarter of a grey `side` canvas, in quadrant i % 4."""
    from PIL import Image

    half, small = side // 2, side // 2 - side // 8
    canvases, quadrants = [], []
    for index, photo in enumerate(photos):
        quadrant = (index // 2 % 2, index % 2)
        top, left = quadrant[0] * half + side // 16, quadrant[1] * half + side // 16
        canvas = np.full((side, side, 3), 128, np.uint8)
        canvas[top : top + small, left : left + small] = Image.fromarray(photo).resize(
            (small, small)
        )
        canvases.append(canvas)
        quadrants.append(quadrant)
    return np.stack(canvases), quadrants


def test_the_probes_map_peaks_where_the_photo_is(ensemble_run, photo_classes):  # noqa: F811
    """The probe's half of the heatmap reads the frozen backbones' own feature maps: with a
    cat or coffee photo pasted into one quadrant of a grey canvas, it peaks in that quadrant."""
    import tensorflow as tf

    run, _ = ensemble_run
    model, preprocessor = load_classifier(run)
    paths, _ = _split(run, photo_classes, "validation")
    photos = preprocessor.load(paths + _split(run, photo_classes, "train")[0][:16]).pixels
    canvases, quadrants = _in_quadrants(photos, preprocessor.image_size)
    cam = GradCam(model)
    assert len(cam.probe.map_models) == 4, "MobileNetV2 at two scales, Lite0 and Lite2"
    inputs = tf.convert_to_tensor(canvases, tf.float32)
    predicted = tf.constant(np.asarray(model(inputs)).argmax(axis=1))
    half = preprocessor.image_size // 2
    probe_peaks = product_peaks = 0
    for start in range(0, len(canvases), 8):
        maps = cam.probe(inputs[start : start + 8], predicted[start : start + 8])
        explained = cam(canvases[start : start + 8])
        for heatmap, explanation, quadrant in zip(maps, explained, quadrants[start:]):
            row, column = np.unravel_index(heatmap.argmax(), heatmap.shape)
            probe_peaks += (row // half, column // half) == quadrant
            row, column = np.unravel_index(explanation.heatmap.argmax(), heatmap.shape)
            product_peaks += (row // half, column // half) == quadrant
    # Chance would put a quarter of the peaks there; asked: three in four.
    assert probe_peaks >= 0.75 * len(canvases), f"{probe_peaks} of {len(canvases)}"
    assert product_peaks >= 0.75 * len(canvases), f"{product_peaks} of {len(canvases)}"
    # Each backbone's `call` is its own again once the maps are read.
    assert all("call" not in vars(backbone) for backbone in cam.probe.map_models)
