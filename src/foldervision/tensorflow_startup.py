"""Keep TensorFlow's C++ start-up chatter off the user's terminal, in one place.

TensorFlow's shared libraries log a few lines through absl as they load ("All log messages
before absl::InitializeLog() ...", "oneDNN custom operations are on ...", CPU-feature notes).
They are written before Python can configure logging, so TF_CPP_MIN_LOG_LEVEL does not stop
them. Importing foldervision installs a one-shot import hook: the first import of tensorflow
(directly, or through keras) runs with file descriptor 2 piped through a filter that drops
exactly those known informational lines and forwards every other line at once, so an import
error, a warning or a crash message from the C++ layer still reaches the user.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

STARTUP_CHATTER = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^I\d{4} [\d:.]+\s+\d+ \w+\.cc:\d+\] "),  # absl INFO lines (oneDNN, CPU features)
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),
)
"""Lines TensorFlow prints while loading that say nothing a user can act on.

Only informational lines are dropped: absl warnings (W), errors (E) and fatal lines (F) pass.
"""


def is_startup_chatter(line: str) -> bool:
    return any(pattern.match(line) for pattern in STARTUP_CHATTER)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Route file descriptor 2 through a thread that forwards all but start-up chatter, live."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to protect
        yield
        return
    read_end, write_end = os.pipe()
    forwarder = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
    forwarder.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the forwarder sees EOF
        forwarder.join(timeout=5)
        os.close(original)


def _forward(read_end: int, destination: int) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for raw_line in pipe:
            if not is_startup_chatter(raw_line.decode("utf-8", "replace")):
                os.write(destination, raw_line)


class _QuietLoader(importlib.abc.Loader):
    """Wraps tensorflow's own loader; only its module execution runs with stderr filtered."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        with filtered_stderr():
            self._loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds tensorflow with the other finders, then wraps its loader; removes itself after."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != "tensorflow":
            return None
        uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _QuietTensorFlowFinder()


def install() -> None:
    """Quiet the first tensorflow import of this process (a no-op once it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the C++ log after start-up
    if "tensorflow" in sys.modules or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)
