"""Exported models (TFLite, ONNX, SavedModel) pick the same class as the Keras model."""

from __future__ import annotations

import numpy as np
import pytest

from foldervision.errors import AlreadyExistsError
from foldervision.models.export import export_classifier, load_exported
from foldervision.models.saving import load_classifier, predict_probabilities


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
