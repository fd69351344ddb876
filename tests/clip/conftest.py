"""The CLIP fixtures made by scripts/make_clip_fixtures.py with OpenCLIP (see that script)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clip_fixtures import FIXTURES, TINY_MODEL


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="session")
def fixture_strings() -> list[str]:
    return json.loads((FIXTURES / "strings.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tiny_embedder():
    from foldervision.clip.embedder import load_clip_embedder

    return load_clip_embedder(f"clip:{TINY_MODEL}")
