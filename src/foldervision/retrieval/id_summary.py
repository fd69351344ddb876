"""Id summaries: a few numbers that tell whether two sets of ids are the same.

The catalogue keeps one per tracked table (`files`; the default store's `vectors`), updated
by SQLite triggers written from `SUMMARY_TERMS` in the same transaction as every insert or
delete (`Catalogue.track_ids`), so opening an index compares a few numbers, not 10^6 ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

_MODULUS = 2147483647  # 2^31 - 1: each product of two residues stays below 2^63
_RESIDUE = f"(({{id}} % {_MODULUS}) + {_MODULUS}) % {_MODULUS}"
_SQUARE = f"(({_RESIDUE} * {_RESIDUE}) % {_MODULUS})"
_MIXED = f"(({_RESIDUE} * 1103515245 + 12345) % {_MODULUS})"
SUMMARY_TERMS = ("1", "{id}", _SQUARE, _MIXED)
SUMMARY_COLUMNS = ("count", "total", "squares", "mixed")


class IdSummary(NamedTuple):
    """Count, sum and two hashed sums of a set of ids: equal sets give equal summaries.

    Different sets give different ones except by a coincidence no crash or copy produces
    (the hashed sums are of id^2 and of an LCG step of id, each modulo 2^31 - 1).
    """

    count: int
    total: int
    squares: int
    mixed: int

    @classmethod
    def of(cls, ids: Iterable[int]) -> IdSummary:
        """The summary of `ids` (as the triggers would keep it)."""
        values = np.fromiter((int(value) for value in ids), np.int64)
        residues = values % _MODULUS  # NumPy's % is Python's: never negative here
        return cls(
            count=len(values),
            total=int(values.sum()),
            squares=int((residues * residues % _MODULUS).sum()),
            mixed=int(((residues * 1103515245 + 12345) % _MODULUS).sum()),
        )
