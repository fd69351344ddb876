"""The run folder: staged writes that replace a run only when complete, and its records."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from foldervision.errors import AlreadyExistsError
from foldervision.images import SkippedFile
from foldervision.models import TrainingPhase
from foldervision.runs import OLD_RUN_DEFAULTS, RunFolder, RunMetrics, free_run_folder

TODAYS_METRICS = {
    "model": "lenet",
    "recipe": "digits",
    "recipe_reason": "--model lenet; median 28x28 px, grey, 200 images/class",
    "data": "/data/digits/train",
    "classes": ["0", "1"],
    "epochs": 2,
    "phases": [
        {
            "name": "train",
            "epochs": 2,
            "learning_rate": 0.001,
            "trainable": "all",
            "schedule": "constant",
            "feature_views": 0,
            "solver": "adam",
        }
    ],
    "best_epoch": 2,
    "train_size": 8,
    "val_size": 4,
    "val_split": 0.2,
    "seed": 7,
    "image_size": 28,
    "color_mode": "grayscale",
    "batch_size": 64,
    "augment": True,
    "augmentation": "digits",
    "flip": False,
    "weights": "random initialisation (trained from scratch)",
    "parameters": 61111,
    "val_accuracy": 0.75,
    "val_loss": 0.408,
    "per_class": {
        "0": {"precision": 1.0, "recall": 0.5, "f1": 0.666667, "support": 2},
        "1": {"precision": 0.666667, "recall": 1.0, "f1": 0.8, "support": 2},
    },
    "confusion_matrix": [[1, 1], [0, 2]],
    "train_seconds": 2.896,
    "history": {"loss": [0.9, 0.5], "accuracy": [0.5, 0.8]},
    "skipped_files": [{"path": "/data/digits/train/1/bad.png", "reason": "bad.png: truncated"}],
}
"""metrics.json as the training code wrote it before RunMetrics existed (keys in its order)."""


@pytest.fixture()
def metrics() -> RunMetrics:
    return RunMetrics.from_json(TODAYS_METRICS)


def test_metrics_json_keeps_its_keys_order_and_values(tmp_path, metrics):
    assert metrics.phases == [TrainingPhase("train", 2, 0.001, "all", "constant", 0)]
    skipped = SkippedFile("/data/digits/train/1/bad.png", "bad.png: truncated")
    assert metrics.skipped_files == [skipped]
    run = RunFolder(tmp_path)
    run.write_metrics(metrics)
    written = json.loads(run.metrics_path.read_text())
    kept = list(written.items())[: len(TODAYS_METRICS)]
    assert kept == list(TODAYS_METRICS.items())  # every old key, in its order, same value
    added = dict(list(written.items())[len(TODAYS_METRICS) :])
    assert added == {key: OLD_RUN_DEFAULTS[key] for key in added}  # only later keys, defaulted
    assert run.read_metrics() == metrics


def test_a_run_from_before_recipes_still_reads(tmp_path):
    """The first metrics.json had no recipe, reason or augmentation style, nor feature views."""
    record = {k: v for k, v in TODAYS_METRICS.items() if "recipe" not in k and k != "augmentation"}
    record["phases"] = [{"name": "train", "epochs": 2, "learning_rate": 0.001}]
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    metrics = RunFolder(tmp_path).read_metrics()
    assert (metrics.recipe, metrics.recipe_reason, metrics.augmentation) == (None, "", None)
    assert metrics.phases == [TrainingPhase("train", 2, 0.001)]
    assert (metrics.model, metrics.val_accuracy) == ("lenet", 0.75)


def test_a_file_that_is_not_a_runs_metrics_names_the_file_and_what_is_missing(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"val_accuracy": 0.5}))
    expected = r"metrics.json: not the metrics of a trained run \(no model, data, classes, ...\)\.$"
    with pytest.raises(ValueError, match=expected):
        RunFolder(tmp_path).read_metrics()


def test_a_staged_run_appears_only_when_complete(tmp_path, metrics):
    run = RunFolder(tmp_path / "run")
    with run.staged() as staging:
        staging.write_metrics(metrics)
        assert not run.path.exists()
    assert run.read_metrics() == metrics
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_a_failed_run_leaves_the_earlier_run_untouched(tmp_path, metrics):
    run = RunFolder(tmp_path / "run")
    with run.staged() as staging:
        staging.write_metrics(metrics)
    with pytest.raises(KeyboardInterrupt), run.staged(overwrite=True) as staging:
        staging.write_metrics(replace(metrics, val_accuracy=0.9))
        raise KeyboardInterrupt
    assert run.read_metrics() == metrics
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_an_existing_run_is_replaced_only_when_asked(tmp_path, metrics):
    run = RunFolder(tmp_path / "run")
    with run.staged() as staging:
        staging.write_metrics(metrics)
    refused = pytest.raises(AlreadyExistsError, match="run: a run folder already exists here")
    with refused:
        run.check_writable()
    with refused, run.staged():
        pytest.fail("must refuse before anything is written")
    run.check_writable(overwrite=True)
    with run.staged(overwrite=True) as staging:
        staging.write_metrics(replace(metrics, val_accuracy=0.9))
    assert run.read_metrics().val_accuracy == 0.9


def test_evaluations_are_recorded_per_data_folder(tmp_path):
    run = RunFolder(tmp_path)
    assert run.read_evaluations() == {}
    run.record_evaluation("/data/test", {"accuracy": 0.9})
    run.record_evaluation("/data/other", {"accuracy": 0.8})
    run.record_evaluation("/data/test", {"accuracy": 0.95})
    assert run.read_evaluations() == {
        "/data/test": {"accuracy": 0.95},
        "/data/other": {"accuracy": 0.8},
    }


def test_missing_metrics_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="metrics.json: missing"):
        RunFolder(tmp_path).read_metrics()


def test_free_run_folder_never_picks_an_existing_one(tmp_path):
    base = tmp_path / "task_01_lenet"
    assert free_run_folder(base) == base
    base.mkdir()
    (tmp_path / "task_01_lenet-2").mkdir()
    assert free_run_folder(base) == tmp_path / "task_01_lenet-3"


def test_each_evaluated_folder_gets_its_own_confusion_matrix_plot(tmp_path):
    run = RunFolder(tmp_path / "run")
    digits = run.evaluation_confusion_matrix_plot_path("/data/digits/test")
    photos = run.evaluation_confusion_matrix_plot_path("/data/photos/test")
    assert digits.parent == photos.parent == tmp_path / "run" / "evaluations"
    assert digits.name.startswith("test-") and photos.name.startswith("test-")
    assert digits != photos
    assert digits == run.evaluation_confusion_matrix_plot_path("/data/digits/test")
