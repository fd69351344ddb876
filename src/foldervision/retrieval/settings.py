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


MAX_SCALES = 4


def check_scales(scales: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Scales as the embedder takes them: the full size (1) first, no repeats, none under
    1/4 (a 224-px network would see 56 px)."""
    scales = tuple(float(scale) for scale in scales)
    if not scales or scales[0] != 1.0 or len(set(scales)) != len(scales):
        raise ValueError(
            f"--scales must start with 1 (the full input size) and not repeat, e.g. 1,0.707; "
            f"got {','.join(f'{scale:g}' for scale in scales) or 'nothing'}."
        )
    if any(not 0.25 <= scale <= 1.0 for scale in scales) or len(scales) > MAX_SCALES:
        raise ValueError(
            f"--scales: up to {MAX_SCALES} fractions between 0.25 and 1 of the input side, e.g. "
            f"1,0.707; got {','.join(f'{scale:g}' for scale in scales)}."
        )
    return scales


def parse_scales(text: str | None) -> tuple[float, ...] | None:
    """`--scales 1,0.707` as a tuple (None when not given)."""
    if text is None:
        return None
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--scales takes numbers separated by commas, e.g. 1,0.707; got {text!r}."
        ) from None
    return check_scales(scales)


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
    existing index was built, else "scaled" (`index.follow_existing_index`)."""
    scales: tuple[float, ...] | None = None
    """Fractions of the input side the network sees each photo at, vectors averaged
    (`EmbedderSpec.scales`); None: as the existing index was built, else the model's default
    (`embedder.default_scales`)."""
    store_location: StoreLocation = StoreLocation()
    """Where the vectors live, with the store's options (token, `--ann`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "database", Path(self.database))
        if self.scales is not None:
            object.__setattr__(self, "scales", check_scales(self.scales))
        if self.index_path is not None:
            object.__setattr__(self, "index_path", Path(self.index_path))

    def without_store(self) -> IndexSettings:
        """These settings with the default store: what a Ray worker gets (no credentials)."""
        return dataclasses.replace(self, store_location=StoreLocation())
