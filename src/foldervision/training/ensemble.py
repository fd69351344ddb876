"""The trained model averaged with a linear probe on frozen pretrained vectors (issue 22).

Why: on flowers5 at 64 photos per class (balanced and uneven, ten seeds of calibration), the
photo recipe's fine-tuned model and a logistic regression on MobileNetV2, EfficientNet-Lite0
and Lite2 retrieval vectors side by side were each above the fair probe on most seeds, but
failed on different ones; the mean of their class probabilities had the best worst case
(benchmarks/photo_training_variants.py --ensembles; docs/benchmarks.md).

The saved model is one Keras graph, so `predict`, `evaluate` and `export` run it as any other:
it takes pixels at the embedder's size (the largest backbone's, 260 px with Lite2), the
trained model sees them resized in the graph to its own size, the embedder turns them into the
index's vectors, a Dense softmax layer holds the fitted probe, and the two probability rows are
averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from foldervision.errors import FoldervisionError
from foldervision.models.classifier import with_probe
from foldervision.training.probe_head import (
    PROBE_FOLDS,
    PROBE_MAX_ITER,
    ProbeHead,
    softmax_weights,
)

PROBE_CS = np.logspace(-2, 3, 11)
"""Inverse L2 strengths tried on the unit vectors: the benchmarks' fair probe's grid."""

UNCROSSVALIDATED_C = 1.0
"""C when a class has fewer than 2 training photos (nothing to cross-validate on)."""


@dataclass(frozen=True)
class Ensemble:
    """The saved model and what it is in words (for the report)."""

    model: keras.Model
    description: str

    @property
    def image_size(self) -> int:
        """The pixels it takes (the embedder's size)."""
        return int(self.model.input_shape[1])


def fit_vector_probe(
    vectors: np.ndarray,
    labels: np.ndarray,
    class_weights: dict[int, float] | None,
    seed: int,
) -> ProbeHead:
    """Multinomial logistic regression, C chosen by stratified k-fold cross-validation on the
    training photos only (the fair probe's own fitting, so the ensemble's probe is that one)."""
    import warnings

    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    folds = min(PROBE_FOLDS, int(np.bincount(labels).min()))
    with warnings.catch_warnings():  # scikit-learn's notes on its future defaults
        warnings.simplefilter("ignore", FutureWarning)
        if folds >= 2:
            fitted = LogisticRegressionCV(
                Cs=PROBE_CS,
                cv=folds,
                max_iter=PROBE_MAX_ITER,
                random_state=seed,
                class_weight=class_weights,
            ).fit(vectors, labels)
            C = float(fitted.C_[0])
        else:
            C = UNCROSSVALIDATED_C
            fitted = LogisticRegression(C=C, max_iter=PROBE_MAX_ITER, class_weight=class_weights)
            fitted.fit(vectors, labels)
        coef, intercept = softmax_weights(fitted.coef_, fitted.intercept_)
        cv_accuracy = float("nan")
        if folds >= 2:  # the chosen C's mean held-out accuracy over the folds
            scores = next(iter(fitted.scores_.values()))  # every class holds the same copy
            cv_accuracy = float(scores.mean(axis=0)[np.argmin(np.abs(PROBE_CS - C))])
    return ProbeHead(coef.T.astype(np.float32), intercept.astype(np.float32), C, cv_accuracy)


def probe_ensemble(
    trained: keras.Model,
    backbones: str,
    train_paths: list[Path],
    train_labels: np.ndarray,
    class_weights: dict[int, float] | None,
    seed: int,
) -> Ensemble:
    """Embed the training photos with `backbones`' retrieval embedder, fit the probe on them,
    and join it to `trained` in one graph."""
    from foldervision.retrieval.embedder import load_embedder
    from foldervision.retrieval.settings import IndexSettings

    embedder = load_embedder(IndexSettings(train_paths[0].parent, model=backbones))
    vectors, labels = _embedded(embedder, train_paths, train_labels)
    missing = sorted(set(train_labels.tolist()) - set(labels.tolist()))
    if missing:
        raise FoldervisionError(
            f"the probe ensemble could not read any training image of class index {missing[0]}; "
            "check those files, or train with --no-ensemble."
        )
    probe = fit_vector_probe(vectors, labels, class_weights, seed)
    embedding = embedder.build_embedding_model()
    model = with_probe(trained, embedding, probe.kernel, probe.bias)
    description = (
        f"class probabilities averaged with a linear probe's on frozen {backbones} vectors "
        f"(logistic regression, C={probe.C:.3g} by cross-validation on the training images, "
        f"held-out score {probe.cv_accuracy:.1%}); "
        f"input {embedder.spec.image_size} px, the trained model's "
        f"{int(trained.input_shape[1])} px resized in the graph"
    )
    return Ensemble(model, description)


def _embedded(
    embedder: Any, paths: list[Path], labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of the training photos, and their labels (a file the embedder cannot read,
    though the training loader could, is left out of the probe)."""
    label_of = {str(path): label for path, label in zip(paths, labels)}
    vectors, kept = [], []
    for batch in embedder.embed_files(paths):
        if len(batch.paths):
            vectors.append(batch.vectors)
            kept += [label_of[str(path)] for path in batch.paths]
    if not vectors:
        raise FoldervisionError("the probe ensemble could not read any training image.")
    return np.concatenate(vectors), np.array(kept)
