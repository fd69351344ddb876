"""Uneven classes: the recipe weights the loss and says so; evaluate reports balanced figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from user_process import run_cli

from foldervision.inference import evaluate_folder
from foldervision.recipes import class_weights_for
from foldervision.reports import classification_metrics
from foldervision.runs import RunFolder
from foldervision.training import TrainingConfig, resolve_settings, train

RARE_IMAGES = 12


@pytest.fixture(scope="module")
def uneven_digits(sample_digits, tmp_path_factory) -> Path:
    """Real digits: 200 zeros, 200 ones and only 12 twos (the rare class)."""
    folder = tmp_path_factory.mktemp("uneven") / "digits"
    for digit in ("0", "1"):
        shutil.copytree(sample_digits / "train" / digit, folder / digit)
    (folder / "2").mkdir()
    for path in sorted((sample_digits / "train" / "2").glob("*.png"))[:RARE_IMAGES]:
        shutil.copy(path, folder / "2" / path.name)
    return folder


def test_class_weights_only_for_uneven_classes_unless_asked():
    assert class_weights_for([100, 90, 40]) == (None, "")
    weights, why = class_weights_for([160, 160, 10])
    assert weights == pytest.approx({0: 330 / 480, 1: 330 / 480, 2: 330 / 30})
    assert why == "uneven classes (10 to 160 images): class-weighted loss"
    # Weighted, every class adds up to the same total weight: a third of the images' count.
    assert [weights[i] * n for i, n in enumerate([160, 160, 10])] == pytest.approx([110] * 3)
    assert class_weights_for([160, 160, 10], "none") == (
        None,
        "uneven classes (10 to 160 images), not weighted (--class-balance none)",
    )
    assert class_weights_for([100, 90, 40], "weights")[0] is not None
    with pytest.raises(ValueError, match="Unknown --class-balance 'sometimes'"):
        class_weights_for([1, 2], "sometimes")


def test_balanced_accuracy_and_macro_f1_are_the_mean_recall_and_f1():
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    result = classification_metrics(labels, np.eye(2)[predicted], ["big", "rare"])
    assert result["accuracy"] == pytest.approx(0.9)
    assert result["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    f1_big, f1_rare = 2 * (8 / 9) / (1 + 8 / 9), 2 * 0.5 / 1.5
    assert result["macro_f1"] == pytest.approx((f1_big + f1_rare) / 2)


def test_an_uneven_folder_is_trained_with_class_weights_and_says_so(
    uneven_digits, sample_digits, tmp_path
):
    settings = resolve_settings(
        TrainingConfig(data=uneven_digits, out=tmp_path / "run", epochs=2, seed=5, verbose=0)
    )
    train_counts = np.bincount(settings.folder.labels[settings.train_indices])
    assert train_counts[2] < train_counts[0] / 3
    assert settings.class_weights is not None
    assert settings.class_weights[2] > 5 * settings.class_weights[0]
    assert settings.recipe_line.endswith(
        f"; uneven classes ({train_counts[2]} to {train_counts[0]} images): class-weighted loss)"
    )
    metrics = train(settings)
    assert metrics.class_weights == pytest.approx(
        {name: settings.class_weights[i] for i, name in enumerate(["0", "1", "2"])}, abs=1e-6
    )
    report = (tmp_path / "run" / "report.md").read_text()
    assert "class-weighted loss" in report and "- class weights (uneven classes): 0 " in report
    assert "balanced accuracy (mean per-class recall)" in report
    assert RunFolder(tmp_path / "run").read_metrics() == metrics

    # On a balanced test folder, the weighted run finds the rare class more often than the
    # same run unweighted (same seed, same split).
    unweighted = resolve_settings(
        TrainingConfig(
            data=uneven_digits,
            out=tmp_path / "plain",
            epochs=2,
            seed=5,
            verbose=0,
            class_balance="none",
        )
    )
    assert unweighted.class_weights is None and "not weighted" in unweighted.recipe_line
    train(unweighted)
    weighted_test = evaluate_folder(tmp_path / "run", sample_digits / "test", use_onnx=False)
    plain_test = evaluate_folder(tmp_path / "plain", sample_digits / "test", use_onnx=False)
    rare = [result["per_class"]["2"]["recall"] for result in (weighted_test, plain_test)]
    assert rare[0] > rare[1], rare
    assert weighted_test["balanced_accuracy"] > plain_test["balanced_accuracy"]
    for result in (weighted_test, plain_test):
        recalls = [figures["recall"] for figures in result["per_class"].values()]
        assert result["balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=1e-5)


def test_train_prints_balanced_accuracy_beside_accuracy_for_uneven_classes(uneven_digits, tmp_path):
    result = run_cli("train", uneven_digits, "--out", tmp_path / "run", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    metrics = RunFolder(tmp_path / "run").read_metrics()
    assert (
        f"lenet: validation accuracy {100 * metrics.val_accuracy:.2f}%, balanced accuracy "
        f"{100 * metrics.val_balanced_accuracy:.2f}% ({metrics.val_size} images"
    ) in result.stderr
