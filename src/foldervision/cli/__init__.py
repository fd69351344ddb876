"""The `foldervision` command: one Typer app; commands grouped by concern in sibling modules."""

from __future__ import annotations

from foldervision.cli import classify as _classify  # noqa: F401, E402

# Importing the command modules registers their commands on `app`.
from foldervision.cli import data as _data  # noqa: F401, E402
from foldervision.cli import info as _info  # noqa: F401, E402
from foldervision.cli import library as _library  # noqa: F401, E402
from foldervision.cli import models as _models  # noqa: F401, E402
from foldervision.cli import retrieval as _retrieval  # noqa: F401, E402
from foldervision.cli import serve as _serve  # noqa: F401, E402
from foldervision.cli import weights as _weights  # noqa: F401, E402
from foldervision.cli.app import app, main

__all__ = ["app", "main"]
