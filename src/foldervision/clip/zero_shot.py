"""Zero-shot labels: a CLIP model becomes a classifier of any labels, with no training.

Each label's prompts ("a photo of a {label}.") are embedded, normalised, averaged and
normalised again, as OpenCLIP's `build_zero_shot_classifier` does; an image's class
probabilities are softmax(logit_scale * cosine) over the labels. The result plugs into the
same `predict_with` and `evaluate_with` a trained run uses, so the outputs are the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.clip.embedder import ClipEmbedder, load_clip_embedder, unit_rows
from foldervision.errors import FoldervisionError
from foldervision.images import LoadedImages, Resize, load_images
from foldervision.inference import (
    DEFAULT_TOP,
    Probabilities,
    collect_image_paths,
    evaluate_with,
    predict_with,
)
from foldervision.models.saving import Preprocessor
from foldervision.runs import DEFAULT_MISTAKES

DEFAULT_TEMPLATES = ("a photo of a {}.",)
"""OpenAI's basic prompt; class folder names and --labels fill the braces."""


@dataclass(frozen=True)
class ClipPreprocessor(Preprocessor):
    """Decodes files as the CLIP model wants them (shortest side, centre crop)."""

    resize: Resize | None = None

    def load(self, paths: list[Path]) -> LoadedImages:
        return load_images(paths, self.image_size, self.color_mode, resize=self.resize)


def parse_labels(text: str) -> list[str]:
    """ "daisy, tulip,sunflower" -> the labels, in order; at least two, no repeats."""
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise FoldervisionError(
            f"--labels {text!r}: give two or more different labels, separated by commas."
        )
    return labels


def label_vectors(
    embedder: ClipEmbedder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> np.ndarray:
    """(len(labels), D) unit vectors: each label's prompt vectors averaged, renormalised."""
    vectors = []
    for label in labels:
        prompts = embedder.embed_texts([template.format(label) for template in templates])
        vectors.append(prompts.mean(axis=0))
    return unit_rows(np.stack(vectors))


def zero_shot_classifier(
    embedder: ClipEmbedder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> tuple[Probabilities, ClipPreprocessor]:
    """Class probabilities and a preprocessor, as `probability_function` gives for a run."""
    classes = label_vectors(embedder, labels, templates)
    scale = np.float32(embedder.model.config.logit_scale)

    def probabilities(pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, len(labels)), np.float32)
        logits = scale * embedder.embed_pixels(pixels) @ classes.T
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)

    preprocessor = ClipPreprocessor(
        model_name=embedder.spec.model,
        class_names=list(labels),
        image_size=embedder.spec.image_size,
        color_mode=embedder.spec.color_mode,
        resize=embedder.resize,
    )
    return probabilities, preprocessor


def predict_zero_shot(
    model: str, labels: Sequence[str], inputs: list[str | os.PathLike], top: int = DEFAULT_TOP
) -> tuple[list[dict[str, Any]], list[Any]]:
    """`predict`'s answers (label, confidence, probabilities, top) for the given labels."""
    probabilities, preprocessor = zero_shot_classifier(load_clip_embedder(model), labels)
    return predict_with(probabilities, preprocessor, collect_image_paths(inputs), top)


def evaluate_zero_shot(
    model: str,
    folder: str | os.PathLike,
    confusion_matrix_plot: str | os.PathLike | None = None,
    mistakes: int = DEFAULT_MISTAKES,
    mistakes_sheet: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """`evaluate`'s figures on a labelled folder, its subfolder names as the labels."""
    from foldervision.datasets import scan_labelled_folder

    labels = scan_labelled_folder(folder, min_images_per_class=0).class_names
    probabilities, preprocessor = zero_shot_classifier(load_clip_embedder(model), labels)
    plot_path = Path(confusion_matrix_plot) if confusion_matrix_plot is not None else None
    sheet_path = Path(mistakes_sheet) if mistakes_sheet is not None else None
    return evaluate_with(probabilities, preprocessor, folder, plot_path, mistakes, sheet_path)
