"""Where vectors live and how nearest neighbours are found: the stores, their registry, protocol.

A store holds unit vectors keyed by the catalogue's stable integer ids: it adds (or replaces)
and removes vectors by id, and answers k-nearest-neighbour queries with (distances, ids),
over every vector or only over given ids (a filter's matches: FAISS id selectors, a Milvus
filter expression).
The catalogue (`retrieval.catalogue`) stays the record of which file has which id, so a store
never needs to know about paths, and a store that outgrows one machine can be swapped in.

    --store faiss                      vectors in the index's SQLite file, searched with a FAISS
                                       index file beside it, exact or approximate by size
                                       (`stores.faiss`, `stores.ann`); the default
    --store milvus[:PATH.db]           Milvus Lite, embedded (`stores.milvus`)
    --store milvus:http://HOST:PORT    a Milvus server or cluster

The `--store` text is parsed once into a `StoreLocation`, which also carries the options only
stores read: the server's token and the `--ann` choice. Every store implements `VectorStore`
and subclasses it for the defaults, so callers use one interface and never probe for methods.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from foldervision.errors import FoldervisionError
from foldervision.registry import Registry

if TYPE_CHECKING:
    from foldervision.retrieval.catalogue import Catalogue, IdSummary
    from foldervision.retrieval.spec import EmbedderSpec

DEFAULT_STORE = "faiss"
ANN_MODES = ("auto", "exact", "approximate")
"""`--ann`: auto (exact below a size, approximate above), exact, or approximate."""


@dataclass(frozen=True)
class StoreLocation:
    """`--store` parsed once: a registered store's name and its argument, plus store options.

    "milvus:http://h:19530" is name "milvus", argument "http://h:19530". `token` (server
    credentials) is never printed; `ann` and `recall` (the approximate index's recall target,
    `stores.tuning`) are None when not given (the store keeps its own).
    """

    name: str = DEFAULT_STORE
    argument: str | None = None
    _: KW_ONLY
    token: str | None = field(default=None, repr=False)
    ann: str | None = None
    recall: float | None = None

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        token: str | None = None,
        ann: str | None = None,
        recall: float | None = None,
    ) -> StoreLocation:
        """Refuse, in one line, a store that is not registered, an `--ann` out of ANN_MODES or
        a `--recall` outside (0, 1]."""
        name, _, argument = text.partition(":")
        if name not in STORES:
            raise FoldervisionError(
                f"Unknown vector store {text!r}; choose one of: {', '.join(STORES.names())}."
            )
        if ann is not None and ann not in ANN_MODES:
            raise FoldervisionError(f"--ann {ann}: choose one of {', '.join(ANN_MODES)}.")
        if recall is not None and not 0 < recall <= 1:
            raise FoldervisionError(f"--recall {recall}: give a share between 0 and 1, e.g. 0.95.")
        return cls(name, argument or None, token=token or None, ann=ann, recall=recall)

    def __str__(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name


class VectorStore(Protocol):
    """Everything the index, the service, the tools and the benchmarks use of a store.

    A store subclasses this protocol: the first seven methods are its own; the others have
    defaults for a store with nothing to persist, no cheap id summary, no index to describe.
    """

    @abstractmethod
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under these ids, replacing any vector an id already has."""

    @abstractmethod
    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        """Drop the vectors of these ids (unknown ids are ignored)."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every id that has a vector, in increasing order."""

    @abstractmethod
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of these ids, in that order (each id must be present)."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Euclidean distances, ids), each (queries, min(k, len)); nearest first.

        `ids` (a filter's matching files) restricts the search to those ids, inside the
        search, so the answer is the top k among them, not a top k with the others dropped;
        ids without a vector are ignored. Where fewer than k match, the columns left over
        hold id -1 at distance inf.
        """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def flush(self) -> None:
        """Persist the search structure; `ImageIndex.update` calls it once at the end."""

    def id_summary(self) -> IdSummary | None:
        """The ids' `IdSummary` if the store keeps one cheaply; None makes the index read ids."""
        return None

    def index_kind(self) -> str | None:
        """How `search` finds neighbours: "exact" or "approximate" (None: not known yet)."""
        return None

    def index_description(self) -> dict[str, Any]:
        """What the store reports about its search structure, for people and benchmarks."""
        return {"kind": self.index_kind()}

    def holding_vectors(self) -> contextlib.AbstractContextManager[None]:
        """While open, the store may serve `vectors` and its searches' re-ranking from memory:
        for many searches over the whole collection (`duplicates`). Default: nothing held."""
        return contextlib.nullcontext()


StoreFactory = Callable[[StoreLocation, "Catalogue", "EmbedderSpec"], VectorStore]
"""Opens a store for an index: where (with the store's options), its catalogue, its embedder."""

STORES: Registry[StoreFactory] = Registry("vector store")
STORES.register("faiss", "foldervision.retrieval.stores.faiss:open_faiss_store")
STORES.register("milvus", "foldervision.retrieval.stores.milvus:open_milvus_store")


def open_store(location: StoreLocation, catalogue: Catalogue, spec: EmbedderSpec) -> VectorStore:
    """The store `location` names (its module is imported now, not before)."""
    return STORES.get(location.name)(location, catalogue, spec)
