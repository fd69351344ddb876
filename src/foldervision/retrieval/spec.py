"""What decides a vector's value, as data: the index, the stores and the backends all key on it.

Kept apart from `retrieval.embedder` (which runs networks) so that stores and backends can name
a spec without importing what embeds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

PRECISIONS = ("fp32", "int8")
DEFAULT_PRECISION = "fp32"
"""INT8 is an option: it moved the top 4 too often on flowers5 (benchmarks/embedding_speed.py)."""


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything that decides a vector's value; vectors from different specs don't compare."""

    model: str
    weights: str
    image_size: int
    color_mode: str
    layer: str
    pooling: str = "avg"
    flip_average: bool = False
    precision: str = DEFAULT_PRECISION
    """"fp32", or "int8" (statically quantized): vectors of the two never mix in one index."""
    decoding: str = "full"
    """How JPEGs were decoded: "full" (every pixel, then resized). Indexes written before this
    field existed decoded large JPEGs in draft mode (at 1/2 to 1/8 scale), which moved vectors
    by up to 2e-2; they read back as "draft", so they are refused instead of mixed."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """A short stable hash of every field: names the exported model file and the collection."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderSpec:
        return cls(**{"decoding": "draft", **data})

    def describe(self) -> str:
        flip = ", flip-averaged" if self.flip_average else ""
        precision = f", {self.precision}" if self.precision != DEFAULT_PRECISION else ""
        decoding = ", draft-decoded JPEGs" if self.decoding == "draft" else ""
        return (
            f"{self.model} [{self.weights}] layer {self.layer}, {self.pooling} pooling{flip}, "
            f"{self.image_size} px {self.color_mode}{precision}{decoding}"
        )
