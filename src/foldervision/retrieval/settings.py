"""What an index is made of, decided once: `IndexSettings`.

The command line builds one from its options (`cli.options`); the service, the index, the
embedder loader and Ray embedding take it whole, so no layer restates the options. The store
gets its own part, `store_location` (a `StoreLocation`: where, its token, `--ann`): stores sit
below the settings and know nothing of models.
What to *do* with an index (rebuild it, update it) is an argument of the action, not a setting.

    settings = IndexSettings("images_database", precision="int8")
    with RetrievalService.open(settings) as service: ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from foldervision.retrieval.backends import DEFAULT_BACKEND
from foldervision.retrieval.spec import DEFAULT_PRECISION
from foldervision.retrieval.stores import StoreLocation

DEFAULT_MODEL = "mobilenetv2"


@dataclass(frozen=True)
class IndexSettings:
    """Which folder, which index file, which embedder, which store.

    Everything after the folder is named at the call: eight options in a row are too easy to
    pass in the wrong order.
    """

    database: Path
    """The folder of images the index describes."""
    _: KW_ONLY
    index_path: Path | None = None
    """The catalogue file; None: DATABASE/.foldervision/index.sqlite (`default_index_path`)."""
    model: str = DEFAULT_MODEL
    """"mobilenetv2", or the run folder (or .keras file) of a trained classifier."""
    image_size: int | None = None
    """Input size for mobilenetv2 (None: its default); a trained model keeps its own."""
    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION
    decoding: str | None = None
    """How large photos are decoded ("scaled" or "full", `images.DECODINGS`); None: as the
    existing index was built, else "scaled" (`index.follow_index_decoding`)."""
    store_location: StoreLocation = StoreLocation()
    """Where the vectors live, with the store's options (token, `--ann`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "database", Path(self.database))
        if self.index_path is not None:
            object.__setattr__(self, "index_path", Path(self.index_path))

    def without_store(self) -> IndexSettings:
        """These settings with the default store: what a Ray worker gets (no credentials)."""
        return dataclasses.replace(self, store_location=StoreLocation())

