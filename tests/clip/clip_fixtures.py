"""Where the CLIP fixtures made by scripts/make_clip_fixtures.py (with OpenCLIP) live."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TINY_MODEL = FIXTURES / "tiny-clip"
"""A randomly initialised OpenCLIP model of the real architecture, as a model folder."""
