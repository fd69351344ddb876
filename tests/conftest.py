"""Shared fixtures: the repo's real sample digits, a folder of real images in every format,
and real trained runs (LeNet, MobileNetV2) that several test files read."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from image_fixtures import SAMPLE_DIGITS, write_image_zoo

from foldervision.runs import RunMetrics

# One throwaway cache for the whole session (never the user's ~/.cache): the ImageNet weights
# are converted once and every test, and every CLI process a test starts, reuses them.
# The suite sets no TF_* variable: what tests see on stderr is what a user sees.
os.environ["FOLDERVISION_CACHE"] = tempfile.mkdtemp(prefix="foldervision-test-cache-")


@pytest.fixture(scope="session", autouse=True)
def absl_logs_to_the_real_stderr() -> None:
    """absl (TensorFlow's logger) keeps the sys.stderr of its import: in a test, pytest's capture
    file. When uvicorn's logging.config.dictConfig later clears handlers while CliRunner has
    swapped sys.stderr, absl takes that file for its own and closes it, and every later test
    loses stderr ("lost sys.stderr"). The real stderr is one absl never closes (pytest still
    captures fd 2)."""
    import absl.logging

    absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session")
def sample_digits() -> Path:
    """Real MNIST digits 0/1/2 shipped with the repo (train: 200 per class, test: 50)."""
    return SAMPLE_DIGITS


@pytest.fixture()
def image_zoo(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    folder = tmp_path / "zoo"
    return folder, write_image_zoo(folder)


@pytest.fixture(scope="session")
def lenet_run(sample_digits, tmp_path_factory) -> tuple[Path, RunMetrics]:
    """A real LeNet run (2 epochs) on the sample digits, shared by the tests that read runs."""
    from foldervision.training import TrainingConfig, resolve_settings, train

    out = tmp_path_factory.mktemp("runs") / "lenet"
    config = TrainingConfig(
        data=sample_digits / "train", out=out, model="lenet", epochs=2, seed=7, verbose=0
    )
    return out, train(resolve_settings(config))


@pytest.fixture(scope="session")
def mobilenetv2_run(sample_digits, tmp_path_factory) -> tuple[Path, RunMetrics]:
    """A real MobileNetV2 fine-tune from the ImageNet weights: one short epoch per phase, 32 px."""
    from foldervision.training import TrainingConfig, resolve_settings, train

    out = tmp_path_factory.mktemp("runs") / "mobilenetv2"
    config = TrainingConfig(
        data=sample_digits / "train",
        out=out,
        model="mobilenetv2",
        image_size=32,
        head_epochs=1,
        epochs=1,
        seed=7,
        verbose=0,
    )
    return out, train(resolve_settings(config))


@pytest.fixture(scope="session")
def weights_cache() -> Path:
    """The session's converted-weights cache (also what CLI processes started by tests use)."""
    return Path(os.environ["FOLDERVISION_CACHE"])
