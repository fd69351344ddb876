"""What the run folder's figures show: whole epochs on the history plot's x axis."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from foldervision.reports import history_figure, plot_history


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
