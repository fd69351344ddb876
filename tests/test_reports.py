"""What the run folder's figures and report show: whole epochs on the history plot's x axis,
the run's figures in report.md."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from foldervision.images import SkippedFile
from foldervision.models import TrainingPhase
from foldervision.reports import history_figure, plot_history, write_run_report
from foldervision.runs import RunMetrics


def _history(epochs: int) -> dict[str, list[float]]:
    curve = list(np.linspace(1.0, 0.1, epochs))
    return {"loss": curve, "val_loss": curve, "accuracy": curve, "val_accuracy": curve}


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 10, 37])
def test_history_ticks_are_whole_epochs_numbered_from_one(epochs):
    figure = history_figure(_history(epochs), phases=[2] if epochs > 3 else None)
    try:
        for axis in figure.axes:
            low, high = axis.get_xlim()
            ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
            assert ticks, "the epoch axis has no ticks"
            assert all(float(tick).is_integer() for tick in ticks), ticks
            assert min(ticks) >= 1 and max(ticks) <= epochs
            assert list(axis.lines[0].get_xdata()) == list(range(1, epochs + 1))
    finally:
        plt.close(figure)


def test_plot_history_writes_a_png(tmp_path):
    path = tmp_path / "history.png"
    plot_history(_history(4), path, phases=[2])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_states_the_run_and_names_each_skipped_file(tmp_path):
    metrics = RunMetrics(
        model="lenet",
        recipe=None,  # a run from before recipes
        recipe_reason="",
        data="/data/digits/train",
        classes=["0", "1"],
        epochs=3,
        phases=[TrainingPhase("train", 3, 0.001)],
        best_epoch=2,
        train_size=8,
        val_size=4,
        val_split=0.25,
        seed=7,
        image_size=28,
        color_mode="grayscale",
        batch_size=64,
        augment=False,
        augmentation="none",
        flip=False,
        weights="random initialisation (trained from scratch)",
        parameters=61111,
        val_accuracy=0.75,
        val_loss=0.40812,
        per_class={
            "0": {"precision": 1.0, "recall": 0.5, "f1": 0.666667, "support": 2},
            "1": {"precision": 0.666667, "recall": 1.0, "f1": 0.8, "support": 2},
        },
        confusion_matrix=[[1, 1], [0, 2]],
        train_seconds=2.04,
        history=_history(3),
        skipped_files=[SkippedFile("/data/digits/train/1/bad.png", "bad.png: truncated")],
    )
    write_run_report(metrics, tmp_path / "report.md")
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert lines[:9] == [
        "# lenet on /data/digits/train",
        "",
        "- recipe: none ()",
        "- classes: 0, 1",
        "- images: 8 train / 4 validation (validation fraction 0.25, seed 7)",
        "- image size: 28 px, grayscale",
        "- weights: random initialisation (trained from scratch)",
        "- epochs: 3 (best epoch 2), training time 2.0 s",
        "- **validation accuracy: 75.00%** (loss 0.4081)",
    ]
    assert "| 0 | 1.0000 | 0.5000 | 0.6667 | 2 |" in lines
    assert lines[-1] == "- `/data/digits/train/1/bad.png`: bad.png: truncated"
