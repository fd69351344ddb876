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

SINGLE_SCALE = (1.0,)

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
    scales: tuple[float, ...] = SINGLE_SCALE
    """Sides, as fractions of `image_size`, at which the network sees each image; the unit
    vectors of every scale are averaged (multi-scale GeM, `retrieval.embedder`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(float(scale) for scale in self.scales))

    def to_dict(self) -> dict[str, Any]:
        """Every field; `scales` only when not the single scale, so specs written before it
        existed keep their fingerprint (their exported file, their Milvus collection)."""
        data = asdict(self)
        if self.scales == SINGLE_SCALE:
            del data["scales"]
        return data

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
        sides = " + ".join(f"{side} px" for side in self.scale_sides())
        return (
            f"{self.model} [{self.weights}] layer {self.layer}, {self.pooling} pooling{flip}, "
            f"{sides} {self.color_mode}{precision}{decoding}"
        )

    def scale_sides(self) -> list[int]:
        """The input side the network gets at each scale."""
        return [round(self.image_size * scale) for scale in self.scales]
