"""What a search answers: ranked matches per query, in the shape of the CLI's `--json` lines.

Vectors are unit length, so Euclidean distance ranks exactly as cosine similarity. The nearest
neighbours themselves come from the vector store (`retrieval.stores`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOP_K = 4


@dataclass(frozen=True)
class Match:
    rank: int
    path: str
    distance: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "distance": self.distance}


@dataclass
class QueryResult:
    """One query's matches, nearest first; this is the `--json` line for that query."""

    query: str
    matches: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "results": [match.to_dict() for match in self.matches]}
