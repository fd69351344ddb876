"""Figures and files that tell a user how a model did: metrics, curves, confusion matrix, report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from foldervision.atomic import atomic_path, write_text_atomic  # noqa: E402
from foldervision.contact_sheet import Tile, write_tile_sheet  # noqa: E402
from foldervision.runs import DEFAULT_MISTAKES, RunMetrics  # noqa: E402


def confusion_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray, num_classes: int):
    """Rows are the true class, columns the predicted one."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_labels), np.asarray(predicted_labels)), 1)
    return matrix


def classification_metrics(
    true_labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class precision/recall/F1/support and the matrix.

    Beside accuracy: balanced accuracy (mean recall of the classes present) and macro F1 (mean
    F1 of the classes present or predicted), which a large class cannot carry alone.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = probabilities.argmax(axis=1)
    matrix = confusion_matrix(true_labels, predicted_labels, len(class_names))
    true_probability = probabilities[np.arange(len(true_labels)), true_labels]
    per_class = {}
    recalls, f1s = [], []
    for index, name in enumerate(class_names):
        correct = int(matrix[index, index])
        predicted_as = int(matrix[:, index].sum())
        support = int(matrix[index, :].sum())
        precision = correct / predicted_as if predicted_as else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        recalls += [recall] if support else []
        f1s += [f1] if support or predicted_as else []
        per_class[name] = {
            "precision": round(precision, 6),
            "recall": round(recall, 6),
            "f1": round(f1, 6),
            "support": support,
        }
    return {
        "accuracy": float((predicted_labels == true_labels).mean()) if len(true_labels) else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "loss": float(-np.log(np.clip(true_probability, 1e-7, 1.0)).mean())
        if len(true_labels)
        else 0.0,
        "size": int(len(true_labels)),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


MISTAKES_PER_ROW = 6


def find_mistakes(
    paths: list[Path],
    true_labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    limit: int = DEFAULT_MISTAKES,
) -> list[dict[str, Any]]:
    """The misclassified images, most confident mistakes first (the ones a threshold would not
    catch, and often a wrong label in the folder): path, true and predicted class, confidence."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true_labels)
    confidence = probabilities[wrong, predicted[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")][: max(0, limit)]
    return [
        {
            "path": str(paths[index]),
            "true": class_names[true_labels[index]],
            "predicted": class_names[predicted[index]],
            "confidence": round(float(probabilities[index, predicted[index]]), 6),
        }
        for index in chosen
    ]


def write_mistakes_sheet(mistakes: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """The mistakes as a contact sheet, six a row, each captioned true / predicted (confidence)."""
    tiles = [
        Tile(
            item["path"],
            f"true {item['true']}\npredicted {item['predicted']} ({item['confidence']:.2f})\n"
            f"{Path(item['path']).name}",
            "tab:red",
        )
        for item in mistakes
    ]
    per_row = MISTAKES_PER_ROW
    rows = [tiles[start : start + per_row] for start in range(0, len(tiles), per_row)]
    return write_tile_sheet(rows, path)


def history_figure(history: dict[str, list[float]], phases: list[int] | None = None) -> Figure:
    """Loss and accuracy per epoch for training and validation, phase changes marked.

    Epochs are numbered from 1 and the x axis only ticks whole epochs: "epoch 2.5" means nothing.
    """
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, title in ((loss_axis, "loss", "Loss"), (accuracy_axis, "accuracy", "Accuracy")):
        axis.plot(epochs, history.get(key, []), marker="o", label="train")
        axis.plot(epochs, history.get(f"val_{key}", []), marker="o", label="validation")
        for boundary in phases or []:
            axis.axvline(boundary + 0.5, color="grey", linestyle="--", linewidth=1)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.set_xlim(0.5, max(1, len(epochs)) + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def plot_history(
    history: dict[str, list[float]], path: str | os.PathLike, phases: list[int] | None = None
) -> None:
    """Write `history_figure` to `path` (history.png in a run folder)."""
    _save_figure(history_figure(history, phases), path)


def plot_confusion_matrix(
    matrix: list[list[int]], class_names: list[str], path: str | os.PathLike, title: str = ""
) -> None:
    matrix = np.asarray(matrix)
    size = max(4.0, 0.6 * len(class_names) + 2.0)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title or "Confusion matrix")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            color = "white" if matrix[row, column] > threshold else "black"
            axis.text(column, row, str(matrix[row, column]), ha="center", va="center", color=color)
    figure.tight_layout()
    _save_figure(figure, path)


def _save_figure(figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(figure)


def format_percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def per_class_table(per_class: dict[str, dict[str, float]]) -> str:
    lines = ["| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, figures in per_class.items():
        lines.append(
            f"| {name} | {figures['precision']:.4f} | {figures['recall']:.4f} | "
            f"{figures['f1']:.4f} | {figures['support']} |"
        )
    return "\n".join(lines)


def write_run_report(metrics: RunMetrics, path: str | os.PathLike) -> None:
    """A short Markdown page a person can read: what was trained, how, and how well."""
    lines = [
        f"# {metrics.model} on {metrics.data}",
        "",
        f"- recipe: {metrics.recipe or 'none'} ({metrics.recipe_reason})",
        f"- classes: {', '.join(metrics.classes)}",
        f"- images: {metrics.train_size} train / {metrics.val_size} validation "
        f"(validation fraction {metrics.val_split}, seed {metrics.seed})",
        f"- image size: {metrics.image_size} px, {metrics.color_mode}",
        f"- weights: {metrics.weights}",
        f"- epochs: {metrics.epochs} (best epoch {metrics.best_epoch}), "
        f"training time {metrics.train_seconds:.1f} s",
        f"- **validation accuracy: {format_percent(metrics.val_accuracy)}** "
        f"(loss {metrics.val_loss:.4f})",
    ]
    if metrics.val_balanced_accuracy is not None and metrics.val_macro_f1 is not None:
        lines.append(
            f"- balanced accuracy (mean per-class recall): "
            f"{format_percent(metrics.val_balanced_accuracy)}, macro F1 {metrics.val_macro_f1:.4f}"
        )
    if metrics.head_choice is not None:
        lines.append(f"- head: {metrics.head_choice}")
    if metrics.flip_average:
        lines.append("- predictions: each image's and its mirror's logits averaged")
    if metrics.ensemble is not None:
        lines.append(f"- ensemble: {metrics.ensemble}")
    if metrics.class_weights is not None:
        weights = ", ".join(f"{name} {value:.2f}" for name, value in metrics.class_weights.items())
        lines.append(f"- class weights (uneven classes): {weights}")
    lines += [
        "",
        "## Per class (validation)",
        "",
        per_class_table(metrics.per_class),
        "",
        "## Curves and confusion matrix",
        "",
        "![history](history.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
    ]
    lines += ["", "## Mistakes (validation)", ""]
    if metrics.mistakes:
        lines += [
            f"The {len(metrics.mistakes)} most confident mistakes, most confident first:",
            "",
            "![mistakes](mistakes.png)",
            "",
            "| file | true | predicted | confidence |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{Path(item['path']).name}` | {item['true']} | {item['predicted']} | "
            f"{item['confidence']:.4f} |"
            for item in metrics.mistakes
        ]
    else:
        lines.append("None: every validation image was classified right.")
    if metrics.skipped_files:
        lines += ["", "## Skipped files", ""]
        lines += [f"- `{item.path}`: {item.reason}" for item in metrics.skipped_files]
    write_text_atomic(path, "\n".join(lines) + "\n")
