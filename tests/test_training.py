"""Training end to end on the real sample digits: the run folder, repeatability, no drift."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from image_fixtures import real_digit

from foldervision.errors import AlreadyExistsError
from foldervision.inference import evaluate_folder, predict_files
from foldervision.models import get_model_entry
from foldervision.models.saving import load_classifier
from foldervision.runs import RunFolder, RunMetrics
from foldervision.training import TrainingConfig, resolve_settings, train

RUN_FILES = {
    "model.keras",
    "metrics.json",
    "split.json",
    "history.png",
    "confusion_matrix.png",
    "report.md",
}


def test_run_folder_has_every_file_and_the_promised_metrics(lenet_run):
    out, metrics = lenet_run
    assert {path.name for path in out.iterdir()} >= RUN_FILES
    saved = json.loads((out / "metrics.json").read_text())
    for key in (
        "model",
        "classes",
        "epochs",
        "train_size",
        "val_size",
        "val_accuracy",
        "val_loss",
        "per_class",
        "confusion_matrix",
        "train_seconds",
        "skipped_files",
    ):
        assert key in saved, key
    assert saved["classes"] == ["0", "1", "2"]
    assert (saved["train_size"], saved["val_size"]) == (480, 120)
    assert np.array(saved["confusion_matrix"]).sum() == 120
    assert saved["val_accuracy"] > 0.8, "two epochs on real digits should already learn something"
    assert set(saved["per_class"]["1"]) == {"precision", "recall", "f1", "support"}
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".lenet.partial-*")), "staging folder must be gone"


def test_split_is_disjoint_and_covers_the_folder(lenet_run, sample_digits):
    out, _ = lenet_run
    split = json.loads((out / "split.json").read_text())
    train_files = {path for path, _ in split["train"]}
    validation_files = {path for path, _ in split["validation"]}
    assert not train_files & validation_files
    assert len(train_files | validation_files) == 600


def test_saved_model_predicts_what_validation_measured(lenet_run, sample_digits):
    """Predicting raw files through model.keras reproduces the validation accuracy exactly."""
    out, metrics = lenet_run
    split = json.loads((out / "split.json").read_text())
    root = sample_digits / "train"
    files = [root / path for path, _ in split["validation"]]
    predictions, skipped = predict_files(out, files)
    assert not skipped
    labels = [metrics.classes[label] for _, label in split["validation"]]
    accuracy = np.mean(
        [prediction["label"] == label for prediction, label in zip(predictions, labels)]
    )
    assert accuracy == pytest.approx(metrics.val_accuracy, abs=1e-9)


def test_saved_model_equals_best_checkpoint_in_memory(lenet_run, sample_digits):
    out, _ = lenet_run
    loaded, preprocessor = load_classifier(out)
    in_memory = get_model_entry("lenet").build(num_classes=3).model
    in_memory.load_weights(out / "checkpoints" / "best.weights.h5")
    pixels = preprocessor.load(sorted((sample_digits / "test" / "2").glob("*.png"))).pixels
    np.testing.assert_allclose(
        loaded.predict(pixels, verbose=0), in_memory.predict(pixels, verbose=0), atol=1e-6
    )


def test_evaluate_on_test_folder_records_result(lenet_run, sample_digits):
    out, _ = lenet_run
    result = evaluate_folder(out, sample_digits / "test")
    assert result["size"] == 150
    assert np.array(result["confusion_matrix"]).sum() == 150
    assert json.loads((out / "evaluations.json").read_text())


def test_same_seed_same_run(sample_digits, tmp_path):
    def run(name: str) -> RunMetrics:
        config = TrainingConfig(
            data=sample_digits / "train", out=tmp_path / name, epochs=1, seed=3, verbose=0
        )
        return train(resolve_settings(config))

    first, second = run("a"), run("b")
    assert first.history == second.history
    assert (tmp_path / "a" / "split.json").read_text() == (
        tmp_path / "b" / "split.json"
    ).read_text()


def test_refuses_to_overwrite_a_run_unless_asked(lenet_run, sample_digits):
    out, _ = lenet_run
    before = (out / "metrics.json").read_text()
    with pytest.raises(AlreadyExistsError, match=f"{out}: a run folder already exists here"):
        resolve_settings(TrainingConfig(data=sample_digits / "train", out=out, epochs=1))
    assert (out / "metrics.json").read_text() == before


def test_bad_images_in_the_training_folder_are_skipped_and_reported(sample_digits, tmp_path):
    data = tmp_path / "digits"
    for digit in ("0", "1"):
        shutil.copytree(sample_digits / "test" / digit, data / digit)
    (data / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    real_digit(1).save(data / "1" / "ünïcode name 1.png")
    config = TrainingConfig(data=data, out=tmp_path / "run", epochs=1, verbose=0)
    metrics = train(resolve_settings(config))
    assert [Path(item.path).name for item in metrics.skipped_files] == ["broken.png"]
    assert "broken.png" in metrics.skipped_files[0].reason
    assert metrics.train_size + metrics.val_size == 101
    assert RunFolder(tmp_path / "run").read_metrics() == metrics
    assert "broken.png" in (tmp_path / "run" / "report.md").read_text()
