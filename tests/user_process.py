"""Run foldervision the way a user does: a fresh process, an environment without TF_* variables.

The test suite sets none of TensorFlow's variables, so what these runs print on stderr is what
a user's terminal shows on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def user_environment() -> dict[str, str]:
    """This process's environment minus every TF_* variable a developer's shell may carry."""
    return {name: value for name, value in os.environ.items() if not name.startswith("TF_")}


def run_as_user(
    *command: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=user_environment(),
    )


def run_cli(
    *arguments: str | os.PathLike[str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`foldervision ARGUMENTS...` in a new process."""
    return run_as_user(sys.executable, "-m", "foldervision", *arguments, cwd=cwd)
