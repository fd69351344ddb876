"""A run folder and the files in it: the one place that knows their names.

Training writes a run into a hidden staging folder that replaces the run folder only once it is
complete, so an interrupted run never leaves a half-written (or half-replaced) run behind.
Evaluation, comparison and export read and add to a finished run through the same class.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from foldervision.atomic import write_json_atomic
from foldervision.errors import AlreadyExistsError, FoldervisionError


class RunFolder:
    """The folder `foldervision train` writes: model, metrics, split, plots, report, exports."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def model_path(self) -> Path:
        """The trained model with its class names and preprocessing (see models/saving.py)."""
        return self.path / "model.keras"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def split_path(self) -> Path:
        """Which files trained and which validated, so the split can be checked and reused."""
        return self.path / "split.json"

    @property
    def history_plot_path(self) -> Path:
        return self.path / "history.png"

    @property
    def confusion_matrix_plot_path(self) -> Path:
        return self.path / "confusion_matrix.png"

    @property
    def report_path(self) -> Path:
        return self.path / "report.md"

    @property
    def best_checkpoint_path(self) -> Path:
        """Weights of the best epoch so far, written during training so a crash keeps them."""
        return self.path / "checkpoints" / "best.weights.h5"

    @property
    def evaluations_path(self) -> Path:
        """Test results recorded by `evaluate`, keyed by the data folder."""
        return self.path / "evaluations.json"

    @property
    def evaluations_folder(self) -> Path:
        """Figures `evaluate` draws, one set per data folder evaluated."""
        return self.path / "evaluations"

    def evaluation_confusion_matrix_plot_path(self, data: str | os.PathLike[str]) -> Path:
        """`evaluations/<folder name>-<hash>_confusion_matrix.png` for an evaluated data folder.

        The name says which folder; the short hash of its full path keeps two folders that share
        a name (every `.../test`) from overwriting each other's plot.
        """
        data = Path(data)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", data.name).strip("._") or "data"
        digest = hashlib.sha1(str(data).encode("utf-8")).hexdigest()[:8]
        return self.evaluations_folder / f"{name}-{digest}_confusion_matrix.png"

    @property
    def export_folder(self) -> Path:
        return self.path / "export"

    # ----------------------------------------------------------------------------------------
    # Reading and adding to a finished run.

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json_atomic(self.metrics_path, metrics)

    def read_metrics(self) -> dict[str, Any]:
        if not self.metrics_path.exists():
            raise FoldervisionError(
                f"{self.metrics_path}: missing; is {self.path} a run folder from "
                "`foldervision train`?"
            )
        return json.loads(self.metrics_path.read_text())

    def write_split(self, split: dict[str, Any]) -> None:
        write_json_atomic(self.split_path, split)

    def read_split(self) -> dict[str, Any]:
        if not self.split_path.exists():
            raise FoldervisionError(
                f"{self.split_path}: missing; is {self.path} a run folder from "
                "`foldervision train`?"
            )
        return json.loads(self.split_path.read_text())

    def read_evaluations(self) -> dict[str, dict[str, Any]]:
        if not self.evaluations_path.exists():
            return {}
        return json.loads(self.evaluations_path.read_text())

    def record_evaluation(self, data: str, figures: dict[str, Any]) -> None:
        """Add (or replace) the result on one data folder, keeping the others."""
        evaluations = self.read_evaluations()
        evaluations[data] = figures
        write_json_atomic(self.evaluations_path, evaluations)

    # ----------------------------------------------------------------------------------------
    # Writing a new run.

    @contextmanager
    def staged(self, overwrite: bool = False) -> Iterator[RunFolder]:
        """Yield a hidden staging run to write into; it replaces this folder only on success.

        Refuses (before anything is written) to replace an existing run unless `overwrite`.
        """
        staging = self._prepare_staging(overwrite)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging.path, ignore_errors=True)
            raise
        self._publish(staging)

    def _prepare_staging(self, overwrite: bool) -> RunFolder:
        if self.path.exists() and not self.path.is_dir():
            raise FoldervisionError(
                f"{self.path}: exists and is not a folder; a run needs a folder of its own"
            )
        if self.path.exists() and any(self.path.iterdir()) and not overwrite:
            raise AlreadyExistsError(f"{self.path}: a run folder already exists here")
        staging = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return RunFolder(staging)

    def _publish(self, staging: RunFolder) -> None:
        """Swap the finished staging folder into place (replacing an old run only now)."""
        previous = self.path.parent / f".{self.path.name}.previous-{os.getpid()}"
        if self.path.exists():
            os.replace(self.path, previous)
        os.replace(staging.path, self.path)
        if previous.exists():
            shutil.rmtree(previous)


def free_run_folder(base: str | os.PathLike[str]) -> Path:
    """`base`, or `base-2`, `base-3`, ... : the first that does not exist yet, so that an
    earlier run is never overwritten."""
    base = Path(base)
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate
