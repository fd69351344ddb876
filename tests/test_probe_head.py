"""The photo head fitted as a linear probe: the same predictions as scikit-learn's logistic
regression, C chosen on folds that keep an image's views together, and a run that says which
model it kept."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from foldervision.training.probe_head import (
    DEFAULT_C,
    PROBE_CS,
    _image_folds,
    fit_probe_head,
)


def _clusters(classes: int, images: int, views: int, seed: int = 0):
    """Per class a Gaussian cluster in 32 dimensions of very different scales, `views` noisy
    rows per image (like the plain and augmented views of a photo)."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(classes, 32)) * 2
    labels = np.repeat(np.arange(classes), images)
    base = centres[labels] + generator.normal(size=(len(labels), 32)) * 2
    rows = np.concatenate([base + generator.normal(size=base.shape) * 0.3 for _ in range(views)])
    scales = np.logspace(-2, 2, 32)  # standardisation matters
    return rows * scales + 5, np.tile(labels, views), np.tile(np.arange(len(labels)), views)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_dense_weights_give_logistic_regression_on_standardised_features(classes):
    features, labels, images = _clusters(classes, images=30, views=2)
    probe = fit_probe_head(features, labels, images, None, seed=0)
    assert probe.C in PROBE_CS and 0.5 < probe.cv_accuracy <= 1.0
    assert probe.kernel.shape == (32, classes) and probe.bias.shape == (classes,)
    standardised = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
    reference = LogisticRegression(C=probe.C, max_iter=3000).fit(standardised, labels)
    ours = _softmax(features @ probe.kernel.astype(np.float64) + probe.bias)
    np.testing.assert_allclose(ours, reference.predict_proba(standardised), atol=1e-3)


def test_cross_validation_keeps_the_views_of_an_image_in_one_fold():
    _, labels, images = _clusters(3, images=12, views=2)
    folds = _image_folds(labels, images, seed=0)
    assert len(folds) == 4
    for train_rows, test_rows in folds:
        assert not set(images[train_rows]) & set(images[test_rows])
        assert set(labels[test_rows]) == {0, 1, 2}, "stratified: every class in every fold"
    held_out = np.concatenate([test_rows for _, test_rows in folds])
    assert sorted(held_out.tolist()) == list(range(len(labels)))


def test_weighted_classes_choose_c_by_balanced_accuracy_and_tiny_classes_skip_cross_validation():
    features, labels, images = _clusters(3, images=20, views=2)
    weights = {0: 0.5, 1: 1.0, 2: 2.0}
    assert fit_probe_head(features, labels, images, weights, seed=0).C in PROBE_CS
    one_each = fit_probe_head(features[[0, 20, 40]], labels[[0, 20, 40]], np.arange(3), None, 0)
    assert one_each.C == DEFAULT_C and np.isnan(one_each.cv_accuracy)
