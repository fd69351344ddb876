"""TensorFlow's start-up chatter never reaches a user; real errors from its import always do."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from user_process import run_as_user, run_cli

from foldervision.tensorflow_startup import is_startup_chatter

CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795613960.094792    2351 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1795613962.762865    2357 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
]
REAL_PROBLEMS = [
    "E0000 00:00:1795613962.1 2357 cuda_dnn.cc:8579] Unable to register cuDNN factory",
    "W0000 00:00:1795613962.1 2357 op_kernel.cc:1857] OP_REQUIRES failed",
    "F0000 00:00:1795613962.1 2357 allocator.cc:12] Check failed: out of memory",
    "ImportError: libcudart.so.12: cannot open shared object file",
    "Traceback (most recent call last):",
]


def test_only_informational_start_up_lines_count_as_chatter() -> None:
    assert all(is_startup_chatter(line) for line in CHATTER)
    assert not any(is_startup_chatter(line) for line in REAL_PROBLEMS)


def test_a_user_error_is_exactly_one_line_in_a_clean_environment(tmp_path: Path) -> None:
    result = run_cli("train", tmp_path / "missing", "--model", "lenet", "--out", tmp_path / "run")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'missing'}: folder not found. Pass a folder with one subfolder per "
        "class."
    ]


def test_importing_the_library_with_keras_prints_nothing() -> None:
    code = "import foldervision, keras, tensorflow as tf; print(int(tf.constant(2) + 1))"
    result = run_as_user(sys.executable, "-c", code)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n" and result.stderr == ""


def test_a_failing_tensorflow_import_still_tells_the_user_why(tmp_path: Path) -> None:
    """A stand-in tensorflow that chatters, logs a real error on fd 2, then fails to import."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    lines = [*CHATTER, REAL_PROBLEMS[0]]
    (fake / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import os
            for line in {lines!r}:
                os.write(2, (line + "\\n").encode())
            raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
            """
        )
    )
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'fake')!r}); import foldervision; "
        "import tensorflow"
    )

    result = run_as_user(sys.executable, "-c", code)

    assert result.returncode == 1
    assert REAL_PROBLEMS[0] in result.stderr
    assert "ImportError: libtensorflow_framework.so.2" in result.stderr
    assert not any(line in result.stderr for line in CHATTER)
