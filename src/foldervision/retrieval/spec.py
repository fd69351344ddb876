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

DEFAULT_DECODING = "scaled"
"""Large photos are decoded at reduced scale, no smaller than twice the network's input side
(`foldervision.images.DECODINGS`); "full" decodes every pixel. On two seeded samples of 300
12-MP stand-ins, scaled minus whole: P@4 +0.0008 / +0.0017, mAP +0.0000 / +0.0004, within the
0.005 guard (benchmarks/decoding_quality.py); 17-19% of top-4 sets changed all the same."""

DECODING_NOTES = {
    DEFAULT_DECODING: "",
    "full": ", large photos decoded whole",
    "draft": ", draft-decoded JPEGs",
}
"""How `describe` names each decoding, so a refused index says what differs."""


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
    decoding: str = DEFAULT_DECODING
    """How large images were decoded: "scaled" (to no less than twice `image_size`, then
    resized) or "full" (every pixel, then resized); images under twice the size decode the same
    either way. Indexes written before this field existed decoded large JPEGs in draft mode
    down to `image_size` itself, which moved vectors by up to 2e-2; they read back as "draft",
    so they are refused instead of mixed."""

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
        decoding = DECODING_NOTES.get(self.decoding, f", {self.decoding} decoding")
        return (
            f"{self.model} [{self.weights}] layer {self.layer}, {self.pooling} pooling{flip}, "
            f"{self.image_size} px {self.color_mode}{precision}{decoding}"
        )
