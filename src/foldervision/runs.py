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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from foldervision.atomic import write_json_atomic
from foldervision.errors import AlreadyExistsError, FoldervisionError
from foldervision.images import SkippedFile
from foldervision.models import TrainingPhase

DEFAULT_MISTAKES = 24
"""Mistakes `evaluate` and a run's report show: four rows of six, the most confident first
(here, not in reports.py, so the CLI can name it without importing matplotlib)."""


@dataclass(frozen=True)
class RunMetrics:
    """What metrics.json records of a run: the settings that repeat it, and how well it did.

    The fields are metrics.json's keys, in its order, so a file written today reads the same.
    """

    model: str
    recipe: str | None
    """None in runs from before recipes existed."""
    recipe_reason: str
    """Why the recipe was chosen, in words (the `recipe:` line train prints)."""
    data: str
    classes: list[str]
    epochs: int
    """Of all phases together."""
    phases: list[TrainingPhase]
    best_epoch: int
    """The epoch (counted over all phases, from 1) whose weights the model keeps."""
    train_size: int
    val_size: int
    val_split: float
    seed: int
    image_size: int
    color_mode: str
    batch_size: int
    augment: bool
    augmentation: str | None
    """The augmentation style, "none" when off; None in runs from before styles had names."""
    flip: bool
    weights: str
    """The starting weights, in words."""
    parameters: int
    val_accuracy: float
    val_loss: float
    per_class: dict[str, dict[str, float]]
    """Class name -> precision, recall, f1, support on the validation split."""
    confusion_matrix: list[list[int]]
    """Validation counts; rows: true class, columns: predicted class."""
    train_seconds: float
    history: dict[str, list[float]]
    """Keras' per-epoch curves (loss, accuracy, val_loss, val_accuracy) over all phases."""
    skipped_files: list[SkippedFile]
    class_weights: dict[str, float] | None = None
    """Loss weight per class name when classes were uneven (see --class-balance); None: none."""
    val_balanced_accuracy: float | None = None
    """Mean per-class recall on the validation split; None in runs from before it was kept."""
    val_macro_f1: float | None = None
    mistakes: list[dict[str, Any]] = field(default_factory=list)
    """The validation images the model got wrong, most confident first (file, true, predicted,
    confidence), as many as mistakes.png shows."""
    head_choice: str | None = None
    """How a probe-fitted head was fitted (its C) and whether the head alone or a fine-tuned
    epoch was kept; None for heads trained by epochs."""
    flip_average: bool = False
    """The model predicts from the mean of each image's and its mirror's features."""
    ensemble: str | None = None
    """How the saved model averages the trained model with a probe on frozen pretrained
    vectors (`training.ensemble`), in words; None: the trained model alone."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunMetrics:
        """Read metrics.json's object, also from runs written before a key existed."""
        values = {**OLD_RUN_DEFAULTS, **record}
        missing = [field.name for field in fields(cls) if field.name not in values]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise ValueError(f"not the metrics of a trained run (no {shown})")
        values["phases"] = [_phase(phase) for phase in values["phases"]]
        values["skipped_files"] = [SkippedFile(**item) for item in values["skipped_files"]]
        return cls(**{field.name: values[field.name] for field in fields(cls)})


OLD_RUN_DEFAULTS: dict[str, Any] = {
    "recipe": None,
    "recipe_reason": "",
    "augmentation": None,
    "class_weights": None,
    "val_balanced_accuracy": None,
    "val_macro_f1": None,
    "mistakes": [],
    "head_choice": None,
    "flip_average": False,
    "ensemble": None,
}
"""The keys metrics.json gained after its first version, as older runs read."""


def _phase(record: dict[str, Any]) -> TrainingPhase:
    known = {field.name for field in fields(TrainingPhase)}
    return TrainingPhase(**{key: value for key, value in record.items() if key in known})


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
    def mistakes_sheet_path(self) -> Path:
        """The validation images the model got wrong, most confident first (report.md shows it)."""
        return self.path / "mistakes.png"

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

    def evaluation_mistakes_sheet_path(self, data: str | os.PathLike[str]) -> Path:
        """`evaluations/<folder name>-<hash>_mistakes.png`, beside its confusion matrix."""
        matrix = self.evaluation_confusion_matrix_plot_path(data)
        return matrix.with_name(matrix.name.replace("_confusion_matrix.png", "_mistakes.png"))

    @property
    def export_folder(self) -> Path:
        return self.path / "export"

    # ----------------------------------------------------------------------------------------
    # Reading and adding to a finished run.

    def write_metrics(self, metrics: RunMetrics) -> None:
        write_json_atomic(self.metrics_path, metrics.to_json())

    def read_metrics(self) -> RunMetrics:
        if not self.metrics_path.exists():
            raise FoldervisionError(
                f"{self.metrics_path}: missing; is {self.path} a run folder from "
                "`foldervision train`?"
            )
        try:
            return RunMetrics.from_json(json.loads(self.metrics_path.read_text()))
        except (ValueError, TypeError) as error:  # not JSON, or not a run's metrics
            raise FoldervisionError(f"{self.metrics_path}: {error}.") from None

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

    def check_writable(self, overwrite: bool = False) -> None:
        """Refuse now what `staged` would refuse, so a caller can stop before any work."""
        if self.path.exists() and not self.path.is_dir():
            raise FoldervisionError(
                f"{self.path}: exists and is not a folder; a run needs a folder of its own"
            )
        if self.path.exists() and any(self.path.iterdir()) and not overwrite:
            raise AlreadyExistsError(f"{self.path}: a run folder already exists here")

    def _prepare_staging(self, overwrite: bool) -> RunFolder:
        self.check_writable(overwrite)
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
