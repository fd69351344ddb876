"""Using a trained run: ONNX Runtime predicts what Keras predicts, without importing TensorFlow
once the export is cached, and Keras takes over when a model cannot be exported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from foldervision.cache import sha256_of
from foldervision.inference import CLASSIFIER_CACHE_FOLDER, predict_files, probability_function
from foldervision.models.saving import load_classifier, predict_probabilities


def keras_labels(run: Path, files: list[Path]) -> list[str]:
    model, preprocessor = load_classifier(run)
    probabilities = predict_probabilities(model, preprocessor.load(files).pixels)
    return [preprocessor.class_names[index] for index in probabilities.argmax(axis=1)]


def test_onnx_probabilities_agree_with_keras_on_real_digits(
    lenet_run: tuple[Path, dict], sample_digits: Path
) -> None:
    out, _ = lenet_run
    probabilities_of, preprocessor = probability_function(out)
    files = sorted((sample_digits / "test").rglob("*.png"))
    pixels = preprocessor.load(files).pixels
    model, _ = load_classifier(out)

    onnx_probabilities = probabilities_of(pixels)
    keras_probabilities = predict_probabilities(model, pixels)

    assert onnx_probabilities.shape == (150, 3)
    np.testing.assert_allclose(onnx_probabilities, keras_probabilities, atol=1e-5)
    np.testing.assert_array_equal(
        onnx_probabilities.argmax(axis=1), keras_probabilities.argmax(axis=1)
    )
    cached = Path(os.environ["FOLDERVISION_CACHE"]) / CLASSIFIER_CACHE_FOLDER
    # The name earlier releases cached it under, so their caches stay valid.
    assert (cached / f"{sha256_of(out / 'model.keras')[:16]}-v1.onnx").is_file()


def test_predict_with_a_cached_export_never_imports_tensorflow(
    lenet_run: tuple[Path, dict], sample_digits: Path
) -> None:
    out, _ = lenet_run
    probability_function(out)  # exports once, as the first predict does
    image = sorted((sample_digits / "test" / "1").glob("*.png"))[0]
    script = (
        "import sys\n"
        "from foldervision.cli import main\n"
        "try:\n"
        f"    main(['predict', {str(out)!r}, {str(image)!r}, '--json'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )

    assert completed.returncode == 0, completed.stderr
    prediction, imported = completed.stdout.strip().splitlines()
    assert json.loads(prediction)["label"] == keras_labels(out, [image])[0]
    assert imported == "[]"


def test_a_model_that_cannot_be_exported_is_run_by_keras(
    lenet_run: tuple[Path, dict],
    sample_digits: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import foldervision.models.export as export

    def refuse(*arguments: object) -> None:
        raise RuntimeError("an op the converter does not know")

    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(export, "export_model_file", refuse)
    out, _ = lenet_run
    files = sorted((sample_digits / "test" / "2").glob("*.png"))[:5]

    predictions, skipped = predict_files(out, files)

    assert not skipped
    assert [prediction["label"] for prediction in predictions] == keras_labels(out, files)
    message = capsys.readouterr().err
    assert "could not export to ONNX (RuntimeError: an op the converter does not know)" in message
    assert "running it with Keras" in message


def test_files_are_classified_a_chunk_at_a_time_in_order_with_bad_files_named(
    lenet_run: tuple[Path, dict],
    sample_digits: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import foldervision.inference as inference

    out, _ = lenet_run
    probabilities_of, preprocessor = probability_function(out)
    files = sorted((sample_digits / "test").rglob("*.png"))[:20]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    paths = [*files[:9], broken, *files[9:]]

    whole = inference.classify_files(probabilities_of, preprocessor, paths)
    monkeypatch.setattr(inference, "FILES_PER_CHUNK", 4)
    chunked = inference.classify_files(probabilities_of, preprocessor, paths)

    assert chunked.paths == whole.paths == files
    np.testing.assert_allclose(chunked.probabilities, whole.probabilities, atol=1e-6)
    assert [Path(skip.path) for skip in chunked.skipped] == [broken]
