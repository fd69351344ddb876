"""The run folder: staged writes that replace a run only when complete, and its records."""

from __future__ import annotations

import pytest

from foldervision.errors import AlreadyExistsError
from foldervision.runs import RunFolder, free_run_folder


def test_a_staged_run_appears_only_when_complete(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.staged() as staging:
        staging.write_metrics({"val_accuracy": 0.5})
        assert not run.path.exists()
    assert run.read_metrics() == {"val_accuracy": 0.5}
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_a_failed_run_leaves_the_earlier_run_untouched(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.staged() as staging:
        staging.write_metrics({"val_accuracy": 0.5})
    with pytest.raises(KeyboardInterrupt), run.staged(overwrite=True) as staging:
        staging.write_metrics({"val_accuracy": 0.9})
        raise KeyboardInterrupt
    assert run.read_metrics() == {"val_accuracy": 0.5}
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_an_existing_run_is_replaced_only_when_asked(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.staged() as staging:
        staging.write_metrics({"val_accuracy": 0.5})
    refused = pytest.raises(AlreadyExistsError, match="run: a run folder already exists here")
    with refused, run.staged():
        pytest.fail("must refuse before anything is written")
    with run.staged(overwrite=True) as staging:
        staging.write_metrics({"val_accuracy": 0.9})
    assert run.read_metrics() == {"val_accuracy": 0.9}


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
