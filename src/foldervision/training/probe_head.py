"""A head fitted like a linear probe: logistic regression on the frozen backbone's features.

Why: on small photo folders a softmax head trained by Adam for a fixed number of epochs, its
epoch chosen on a small validation split, was below a logistic regression whose L2 strength is
chosen by cross-validation on the training photos (issue 22). Fitting the head that way, then
fine-tuning from it (LP-FT, Kumar et al. 2022), starts fine-tuning from the probe's accuracy,
and the head alone stays a model the run can keep, or (the photo recipe) average with the
fine-tuned one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROBE_CS = np.logspace(-6, 1, 15)
"""Inverse L2 strengths tried (on standardised features), 1e-6 .. 10, half a decade apart: on
flowers5 at 64 photos per class cross-validation picked 1e-4 to 3e-3."""

PROBE_FOLDS = 4
"""Cross-validation folds (the benchmark's fair probe uses 4)."""

PROBE_CV_ROWS = 4000
"""At most this many feature rows (whole images, all their views) take part in choosing C, so
a big folder's choice costs seconds; the final fit uses every row."""

PROBE_MAX_ITER = 3000

DEFAULT_C = 0.1
"""C when a class has too few images for 2 folds (nothing to cross-validate on)."""


@dataclass(frozen=True)
class ProbeHead:
    """The fitted head as a Dense layer's weights (standardisation folded in), and its choice."""

    kernel: np.ndarray
    """(features, classes)."""
    bias: np.ndarray
    C: float
    cv_accuracy: float
    """Mean held-out accuracy of the chosen C over the folds (balanced accuracy when the
    classes are weighted); NaN when there were too few images to cross-validate."""


def fit_probe_head(
    features: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    class_weights: dict[int, float] | None,
    seed: int,
) -> ProbeHead:
    """Multinomial logistic regression on standardised features, C by k-fold cross-validation.

    `images` says which image each row comes from: the views of one image stay in one fold, or
    a flipped copy in the held-out fold would reward too little regularisation.
    """
    from sklearn.linear_model import LogisticRegression

    features = features.astype(np.float64)
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    standardised = (features - mean) / scale
    cv_rows = _cv_rows(labels, images, seed)
    folds = _image_folds(labels[cv_rows], images[cv_rows], seed)
    C, cv_accuracy = DEFAULT_C, float("nan")
    if folds:
        scores = np.zeros((len(folds), len(PROBE_CS)))
        for fold, (train_rows, test_rows) in enumerate(folds):
            train_rows, test_rows = cv_rows[train_rows], cv_rows[test_rows]
            # Warm starts along the increasing C path: each fit starts from the last.
            path = LogisticRegression(
                max_iter=PROBE_MAX_ITER, class_weight=class_weights, warm_start=True
            )
            for index, value in enumerate(PROBE_CS):
                path.set_params(C=float(value))
                path.fit(standardised[train_rows], labels[train_rows])
                predicted = path.predict(standardised[test_rows])
                scores[fold, index] = _score(labels[test_rows], predicted, class_weights)
        mean_scores = scores.mean(axis=0)
        best = int(np.argmax(mean_scores))  # the first best: the strongest regularisation
        C, cv_accuracy = float(PROBE_CS[best]), float(mean_scores[best])
    model = LogisticRegression(C=C, max_iter=PROBE_MAX_ITER, class_weight=class_weights)
    model.fit(standardised, labels)
    coef, intercept = softmax_weights(model.coef_, model.intercept_)
    coef = coef / scale  # (classes, features): the standardisation folded into the weights
    bias = intercept - coef @ mean
    return ProbeHead(coef.T.astype(np.float32), bias.astype(np.float32), C, cv_accuracy)


def softmax_weights(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fitted logistic regression's (classes, features) weights and biases for a softmax
    layer: with two classes scikit-learn keeps one logit z, the same softmax as [-z/2, +z/2]."""
    if coef.shape[0] == 1:
        return np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    return coef, intercept


def _score(labels: np.ndarray, predicted: np.ndarray, weighted: object) -> float:
    """Accuracy; mean per-class recall (balanced accuracy) when classes are weighted."""
    if not weighted:
        return float(np.mean(predicted == labels))
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))


def _cv_rows(labels: np.ndarray, images: np.ndarray, seed: int) -> np.ndarray:
    """Every row, or those of PROBE_CV_ROWS // views whole images drawn at random."""
    unique_images = np.unique(images)
    views = max(1, len(images) // max(1, len(unique_images)))
    budget = PROBE_CV_ROWS // views
    if len(unique_images) <= budget:
        return np.arange(len(labels))
    generator = np.random.default_rng(seed)
    chosen = generator.choice(unique_images, size=budget, replace=False)
    return np.flatnonzero(np.isin(images, chosen))


def _image_folds(
    labels: np.ndarray, images: np.ndarray, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds over images, expanded to every row (view) of each image; none when a
    class has fewer than 2 images."""
    unique_images, first = np.unique(images, return_index=True)
    fold_count = min(PROBE_FOLDS, int(np.bincount(labels[first]).min()))
    if fold_count < 2:
        return []
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=fold_count, shuffle=True, random_state=seed)
    row_folds = []
    for train_images, test_images in folds.split(unique_images, labels[first]):
        row_folds.append(
            (
                np.flatnonzero(np.isin(images, unique_images[train_images])),
                np.flatnonzero(np.isin(images, unique_images[test_images])),
            )
        )
    return row_folds
