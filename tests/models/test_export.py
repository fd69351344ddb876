"""Exported models (TFLite, ONNX, SavedModel) pick the same class as the Keras model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from user_process import run_cli

from foldervision.errors import AlreadyExistsError
from foldervision.inference import predict_files
from foldervision.models.export import EXPORT_FORMATS, export_classifier, load_exported
from foldervision.models.saving import load_classifier, predict_probabilities
from foldervision.runs import RunFolder


def _test_images(sample_digits, preprocessor):
    files = [path for digit in "012" for path in sorted((sample_digits / "test" / digit).glob("*"))]
    return preprocessor.load(files).pixels.astype("float32")


@pytest.mark.parametrize("export_format", ["tflite", "onnx", "saved_model"])
@pytest.mark.parametrize("run_fixture", ["lenet_run", "mobilenetv2_run"])
def test_export_round_trip_same_top1(request, sample_digits, tmp_path, export_format, run_fixture):
    if export_format == "onnx":
        pytest.importorskip("onnxruntime")
    run, _ = request.getfixturevalue(run_fixture)
    target = export_classifier(run, export_format, out=tmp_path / "export")
    assert (tmp_path / "export" / "labels.txt").read_text().split() == ["0", "1", "2"]
    model, preprocessor = load_classifier(run)
    pixels = _test_images(sample_digits, preprocessor)
    expected = predict_probabilities(model, pixels)
    exported = load_exported(target)(pixels)
    np.testing.assert_array_equal(exported.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(exported, expected, atol=1e-3)


def test_export_refuses_to_overwrite(lenet_run, tmp_path):
    run, _ = lenet_run
    export_classifier(run, "tflite", out=tmp_path)
    with pytest.raises(AlreadyExistsError, match="model.tflite: an export already exists here"):
        export_classifier(run, "tflite", out=tmp_path)


def test_unknown_format(lenet_run, tmp_path):
    with pytest.raises(ValueError, match="tflite"):
        export_classifier(lenet_run[0], "caffe", out=tmp_path)


@pytest.mark.parametrize("export_format", list(EXPORT_FORMATS))
def test_export_command_writes_a_file_that_predicts_what_the_run_predicts(
    lenet_run, sample_digits, tmp_path, export_format
):
    run, _ = lenet_run
    out = tmp_path / "export"

    result = run_cli("export", run, "--format", export_format, "--out", out)

    assert result.returncode == 0, result.stderr
    target = out / EXPORT_FORMATS[export_format]
    assert result.stdout == f"{target}\n"
    checked = min(256, len(RunFolder(run).read_split()["validation"]))
    assert f"top-1 agreement with the Keras model: 100.00% on {checked} validation images" in (
        result.stderr
    )
    class_names = (out / "labels.txt").read_text().split()
    preprocessor = json.loads((out / "preprocessor.json").read_text())
    assert preprocessor["class_names"] == class_names == ["0", "1", "2"]
    files = sorted((sample_digits / "test").rglob("*.png"))
    predictions, skipped = predict_files(run, files)
    _, run_preprocessor = load_classifier(run)
    exported = load_exported(target)(run_preprocessor.load(files).pixels.astype("float32"))
    assert not skipped
    assert [class_names[index] for index in exported.argmax(axis=1)] == [
        prediction["label"] for prediction in predictions
    ]
