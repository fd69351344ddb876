"""What a search answers: ranked matches per query, in the shape of the CLI's `--json` lines.

Vectors are unit length, so Euclidean distance ranks exactly as cosine similarity. The nearest
neighbours themselves come from the vector store (`retrieval.stores`).

Match paths are relative to the database folder, as the index stores them (forward slashes):
the web page puts them in URLs as they are; the command line prints them under the folder the
user named (`QueryResult.in_folder`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_TOP_K = 4


def path_in(folder: str | os.PathLike[str], relative: str) -> str:
    """`folder/relative`, the folder spelled as the user spelled it (`db/a.png`, not absolute)."""
    return str(Path(folder) / relative)


@dataclass(frozen=True)
class Match:
    rank: int
    path: str
    """Relative to the database folder, with forward slashes."""
    distance: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "distance": self.distance}


@dataclass
class QueryResult:
    """One query's matches, nearest first; this is the `--json` line for that query."""

    query: str
    matches: list[Match] = field(default_factory=list)
    reranking: dict[str, Any] | None = None
    """How the matches were re-ranked and what their distances then are (None: not re-ranked,
    distances from the query itself)."""

    def in_folder(self, folder: str | os.PathLike[str]) -> QueryResult:
        """The same answer with each match's path under `folder` (the database, as the user
        named it), as the command line prints and draws it."""
        matches = [replace(match, path=path_in(folder, match.path)) for match in self.matches]
        return replace(self, matches=matches)

    def to_dict(self) -> dict[str, Any]:
        answer = {"query": self.query, "results": [match.to_dict() for match in self.matches]}
        if self.reranking is not None:
            answer["reranking"] = self.reranking
        return answer
