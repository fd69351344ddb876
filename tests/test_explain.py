"""Grad-CAM: a model trained here on images whose class evidence sits in one known quadrant
looks at that quadrant; heatmaps are written for LeNet and MobileNetV2 runs alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from user_process import run_cli

from foldervision.explain import GradCam, explain_files
from foldervision.images import save_image_atomic
from foldervision.models.saving import load_classifier
from foldervision.training import TrainingConfig, resolve_settings, train

SIDE = 28
HALF = SIDE // 2
QUADRANTS = {"top_left": (0, 0), "top_right": (0, 1), "bottom_left": (1, 0), "bottom_right": (1, 1)}


def quadrant_image(quadrant: tuple[int, int], generator: np.random.Generator) -> np.ndarray:
    """Grey noise with one bright 6x6 square somewhere inside the given quadrant, at least 3 px
    from the quadrant's inner edges (a heatmap upsampled from 10x10 cells is that coarse)."""
    pixels = generator.integers(0, 90, (SIDE, SIDE), dtype=np.uint8)
    half = SIDE // 2
    offsets = [int(generator.integers(1, half - 6 - 2)) for _ in range(2)]
    top = half + 2 + offsets[0] if quadrant[0] else half - 3 - 6 - offsets[0] + 1
    left = half + 2 + offsets[1] if quadrant[1] else half - 3 - 6 - offsets[1] + 1
    pixels[top : top + 6, left : left + 6] = 255
    return pixels


@pytest.fixture(scope="module")
def quadrant_run(tmp_path_factory) -> tuple[Path, Path]:
    """A LeNet trained on 40 images per quadrant class, and 6 new images per class to explain."""
    root = tmp_path_factory.mktemp("quadrants")
    generator = np.random.default_rng(0)
    for split, count in (("train", 40), ("new", 6)):
        for name, quadrant in QUADRANTS.items():
            for index in range(count):
                image = quadrant_image(quadrant, generator)
                save_image_atomic(image, root / split / name / f"{name}_{index}.png")
    config = TrainingConfig(
        data=root / "train", out=root / "run", epochs=30, augment=False, seed=1, verbose=0
    )
    metrics = train(resolve_settings(config))
    assert metrics.val_accuracy == 1.0, "a bright square per quadrant is easy to learn"
    return root / "run", root / "new"


def test_the_heatmap_peaks_in_the_quadrant_that_holds_the_evidence(quadrant_run):
    run, new = quadrant_run
    model, preprocessor = load_classifier(run)
    cam = GradCam(model)
    assert cam.layer.name == "conv_2", "LeNet's last feature map before pooling"
    peaks_inside = 0
    for name, quadrant in QUADRANTS.items():
        files = sorted((new / name).glob("*.png"))
        for path, explanation in zip(files, cam(preprocessor.load(files).pixels)):
            assert preprocessor.class_names[explanation.label] == name, path
            heatmap = explanation.heatmap
            assert heatmap.shape == (SIDE, SIDE) and heatmap.max() == pytest.approx(1.0)
            row, column = np.unravel_index(heatmap.argmax(), heatmap.shape)
            peaks_inside += (row // HALF, column // HALF) == quadrant
    # Chance would put a quarter of the peaks there; over data seeds 0-5, 24 of 24 were (with
    # LayerCAM and with Grad-CAM proper alike, 2026-12-05).
    assert peaks_inside >= 22, f"{peaks_inside} of 24 peaks in the evidence's quadrant"


def test_predict_explain_writes_one_overlay_per_image_and_never_overwrites(quadrant_run, tmp_path):
    run, new = quadrant_run
    out = tmp_path / "why"
    result = run_cli("predict", run, new / "top_left", "--json", "--explain", out)
    assert result.returncode == 0, result.stderr
    predictions = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(predictions) == 6
    for prediction in predictions:
        written = Path(prediction["explanation"])
        assert written.parent == out and written.name.endswith("_gradcam.png")
        assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Heatmaps: 6 in" in result.stderr
    again = explain_files(run, [new / "top_left" / "top_left_0.png"], out)
    assert Path(next(iter(again.values()))).name == "top_left_0_gradcam-2.png"


def test_mobilenetv2_runs_are_explained_too(mobilenetv2_run, sample_digits, tmp_path):
    run, _ = mobilenetv2_run
    files = sorted((sample_digits / "test" / "1").glob("*.png"))[:2]
    written = explain_files(run, files, tmp_path / "why")
    assert list(written) == [str(path) for path in files]
    from PIL import Image

    with Image.open(next(iter(written.values()))) as image:
        assert image.mode == "RGB" and min(image.size) >= 224
    model, preprocessor = load_classifier(run)
    explanations = GradCam(model)(preprocessor.load(files).pixels)
    assert all(item.heatmap.shape == (32, 32) for item in explanations)
