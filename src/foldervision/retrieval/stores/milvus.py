"""Milvus as a vector store: embedded Milvus Lite by default, the same client to a cluster.

    --store milvus                      Milvus Lite in DATABASE/.foldervision/milvus.db
    --store milvus:PATH.db              Milvus Lite, embedded: a folder on disk, no server
    --store milvus:http://HOST:19530    Milvus Standalone or Distributed (credentials: the
                                        location's token, --store-token); /DBNAME picks a database

`--ann exact` makes a FLAT collection (the default: the same answers as the default store),
`--ann approximate` an IVF_SQ8 one; a collection keeps the index it was made with.

The SQLite catalogue stays the record of files; the collection holds one row per catalogue id:
(id INT64 primary key, vector, relative path). It is named from the embedder's fingerprint and
carries the spec and the catalogue it belongs to in its properties, so vectors of another
embedder, or another index's vectors, are refused instead of mixed in.

Traps this module steps around (pymilvus 3.0.2, milvus-lite 3.2.2):
- Rows not yet flushed are searched by a Python brute force (seconds per query): writes mark
  the store dirty and the next search (or close) flushes.
- pymilvus flattens `params={...}` into top-level keys, which Lite drops: build parameters go
  in a nested "params" entry, which both Lite and a Milvus server read.
- Lite refuses IVF_PQ; one process at a time may open a Lite folder (its LOCK file; see
  `stores.milvus_connection`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foldervision.errors import FoldervisionError, IndexMismatchError
from foldervision.retrieval.stores import StoreLocation, VectorStore
from foldervision.retrieval.stores.ann import PROBES
from foldervision.retrieval.stores.milvus_connection import connect, quiet, release

if TYPE_CHECKING:
    from foldervision.retrieval.catalogue import Catalogue
    from foldervision.retrieval.spec import EmbedderSpec

DEFAULT_LITE_FILE_NAME = "milvus.db"
COLLECTION_PREFIX = "foldervision_"
SPEC_PROPERTY = "foldervision.spec"
OWNER_PROPERTY = "foldervision.catalogue"
OWNER_TABLE = "milvus_store"
"""A table of the catalogue file: the catalogue's own id, kept through --rebuild."""

EXACT_INDEX = "FLAT"
"""Exact search, like the default store: both stores give the same answers."""
INDEX_TYPES_OF_ANN = {"exact": EXACT_INDEX, "approximate": "IVF_SQ8"}
"""`--ann` -> the index type of a new collection. "auto" has none: a collection cannot switch."""
APPROXIMATE_LISTS = 128
"""IVF lists per segment of an approximate collection (Milvus' own default nlist)."""
EXACT_INDEXES = (EXACT_INDEX, "BRUTE_FORCE")
MAX_PATH_BYTES = 65535
ID_QUERY_BATCH = 10000
GET_BATCH = 1000
WRITE_BATCH = 1000
SUPPORTED_LITE_INDEXES = ("FLAT", "BRUTE_FORCE", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8")


class MilvusStore(VectorStore):
    """Vectors in one Milvus collection keyed by the catalogue's ids (see the module docstring).

    `index_type` and `index_params` choose the collection's index when it is created
    (e.g. "HNSW", {"M": 16, "efConstruction": 200}); None keeps an existing collection's
    index and makes a new one exact. An existing collection of another type is refused.
    """

    def __init__(
        self,
        uri: str,
        catalogue: Catalogue,
        spec: EmbedderSpec,
        token: str | None = None,
        index_type: str | None = None,
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
    ) -> None:
        self.uri = uri
        self.is_lite = uri.endswith(".db")
        self.collection = COLLECTION_PREFIX + spec.fingerprint()
        self._asked_index_type = index_type.upper() if index_type else None
        self.index_type = self._asked_index_type or EXACT_INDEX
        self.index_params = dict(index_params or {})
        self.search_params = dict(search_params or {})
        if self.is_lite and self.index_type not in SUPPORTED_LITE_INDEXES:
            raise FoldervisionError(
                f"Milvus Lite ({uri}) cannot build a {self.index_type} index; use one of "
                f"{', '.join(SUPPORTED_LITE_INDEXES)}, or a Milvus server"
            )
        self._catalogue = catalogue
        self._spec_json = json.dumps(spec.to_dict(), sort_keys=True)
        self._owner = _catalogue_owner(catalogue)
        self._client = connect(uri, token)
        self._dirty = False
        self._count: int | None = None
        try:
            self._exists = self._client.has_collection(self.collection)
            if self._exists:
                self._client.load_collection(self.collection)
                self._check_collection()
                self._check_index_type()
        except BaseException:
            self._disconnect()
            raise
        if not self.search_params and self.index_type.startswith("IVF"):
            self.search_params = {"nprobe": PROBES}  # as the default store probes

    # ----------------------------------------------------------------------------------------
    # Writing.

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self._exists:
            self._create(vectors.shape[1])
        paths = self._catalogue.paths_of(ids)
        rows = [
            {"id": int(i), "vector": vector.tolist(), "path": paths.get(int(i), "")}
            for i, vector in zip(ids, vectors)
        ]
        for start in range(0, len(rows), WRITE_BATCH):
            self._client.upsert(self.collection, rows[start : start + WRITE_BATCH])
        self._dirty, self._count = True, None

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        id_list = [int(i) for i in ids]
        if not id_list or not self._exists:
            return
        for start in range(0, len(id_list), WRITE_BATCH):
            self._client.delete(self.collection, ids=id_list[start : start + WRITE_BATCH])
        self._dirty, self._count = True, None

    def flush(self) -> None:
        """Seal written rows into indexed segments (unflushed rows are brute-forced in Python)."""
        if self._dirty and self._exists:
            self._client.flush(self.collection)
        self._dirty = False

    # ----------------------------------------------------------------------------------------
    # Reading.

    def ids(self) -> np.ndarray:
        if not self._exists:
            return np.zeros(0, np.int64)
        found: list[int] = []
        with quiet("pymilvus"):
            iterator = self._client.query_iterator(
                self.collection, batch_size=ID_QUERY_BATCH, filter="id >= 0", output_fields=["id"]
            )
            try:
                while rows := iterator.next():
                    found.extend(int(row["id"]) for row in rows)
            finally:
                iterator.close()
        return np.asarray(sorted(found), dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        id_list = [int(i) for i in ids]
        if not id_list:
            return np.zeros((0, 0), np.float32)
        found: dict[int, list[float]] = {}
        for start in range(0, len(id_list), GET_BATCH):
            chunk = id_list[start : start + GET_BATCH]
            for row in self._client.get(self.collection, ids=chunk, output_fields=["vector"]):
                found[int(row["id"])] = row["vector"]
        return np.asarray([found[i] for i in id_list], dtype=np.float32)

    def search(
        self, queries: np.ndarray, k: int, ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See `VectorStore.search`; `ids` becomes the filter expression `id in [...]`, which
        Milvus applies inside the search (Milvus Lite reads no expression templates, so the
        integers are written into the expression)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        count = len(self)
        wanted = None if ids is None else np.unique(np.asarray(ids, np.int64))
        k = min(k, count, count if wanted is None else len(wanted))
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        self.flush()
        restriction = {}
        if wanted is not None:
            restriction = {"filter": f"id in [{','.join(str(int(i)) for i in wanted)}]"}
        hits = self._client.search(
            self.collection,
            data=queries.tolist(),
            limit=k,
            anns_field="vector",
            output_fields=["id"],
            search_params={"metric_type": "L2", "params": self.search_params},
            **restriction,
        )
        distances = np.full((len(queries), k), np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, found in enumerate(hits):
            for column, hit in enumerate(list(found)[:k]):
                ids[row, column] = int(hit["id"])
                distances[row, column] = float(hit["distance"])
        # Milvus's L2 is the squared distance; the store interface answers Euclidean distances.
        return np.sqrt(np.maximum(distances, 0.0)), ids

    def index_kind(self) -> str:
        return "exact" if self.index_type in EXACT_INDEXES else "approximate"

    def index_description(self) -> dict[str, Any]:
        """What Milvus reports about the collection's vector index (build params included)."""
        if not self._exists:
            return {"kind": self.index_kind(), "index_type": self.index_type}
        return {"kind": self.index_kind(), **self._client.describe_index(self.collection, "vector")}

    def __len__(self) -> int:
        if not self._exists:
            return 0
        if self._count is None:
            self.flush()
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._disconnect()

    def _disconnect(self) -> None:
        self._client.close()
        if self.is_lite:
            release(self.uri)

    # ----------------------------------------------------------------------------------------
    # The collection.

    def _create(self, dimension: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dimension))
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_BYTES)
        index_params = self._client.prepare_index_params()
        index_params.add_index(
            field_name="vector",
            index_type=self.index_type,
            metric_type="L2",
            # Nested on purpose: pymilvus flattens params={...} into top-level keys, which
            # Milvus Lite silently drops; a "params" entry is read by Lite and servers alike.
            params={"params": self.index_params} if self.index_params else None,
        )
        self._client.create_collection(
            self.collection,
            schema=schema,
            index_params=index_params,
            consistency_level="Strong",
        )
        self._client.alter_collection_properties(
            self.collection,
            properties={SPEC_PROPERTY: self._spec_json, OWNER_PROPERTY: self._owner},
        )
        self._client.load_collection(self.collection)
        self._exists = True

    def _check_collection(self) -> None:
        """Refuse vectors of another embedder, or of another index, rather than mixing them."""
        properties = self._client.describe_collection(self.collection).get("properties", {})
        stored_spec = properties.get(SPEC_PROPERTY)
        if stored_spec is not None and json.loads(stored_spec) != json.loads(self._spec_json):
            raise IndexMismatchError(
                f"{self.uri}: collection {self.collection} was built with another embedder "
                f"({stored_spec}); vectors from different models don't compare"
            )
        owner = properties.get(OWNER_PROPERTY)
        if owner == self._owner:
            return
        if owner is not None and len(self.ids()):
            raise FoldervisionError(
                f"{self.uri}: collection {self.collection} holds the vectors of another index "
                f"(not {self._catalogue.path}); give each index its own Milvus Lite file or "
                "Milvus database (http://HOST:PORT/DBNAME), or drop that collection"
            )
        self._client.alter_collection_properties(
            self.collection,
            properties={SPEC_PROPERTY: self._spec_json, OWNER_PROPERTY: self._owner},
        )

    def _check_index_type(self) -> None:
        """Keep the collection's index; refuse another one asked for rather than ignore it."""
        existing = str(self._client.describe_index(self.collection, "vector")["index_type"])
        if self._asked_index_type not in (None, existing):
            raise FoldervisionError(
                f"{self.uri}: collection {self.collection} has a {existing} index, not "
                f"{self._asked_index_type}; leave --ann out to use it, or give this index its "
                "own Milvus Lite file or database"
            )
        self.index_type = existing


def open_milvus_store(
    location: StoreLocation, catalogue: Catalogue, spec: EmbedderSpec
) -> MilvusStore:
    """`--store milvus[:PATH.db | :http://HOST:PORT[/DBNAME]]`, see the module docstring."""
    index_type = milvus_index_type(location.ann)
    index_params = {"nlist": APPROXIMATE_LISTS} if index_type == "IVF_SQ8" else None
    uri = milvus_uri(catalogue, location.argument)
    return MilvusStore(
        uri, catalogue, spec, location.token, index_type=index_type, index_params=index_params
    )


def milvus_index_type(ann: str | None) -> str | None:
    """The index type `--ann` asks of a collection (None: not asked)."""
    if ann is None:
        return None
    if ann not in INDEX_TYPES_OF_ANN:
        raise FoldervisionError(
            f"--ann {ann}: a Milvus collection keeps the index it is made with; pass --ann "
            "exact (FLAT) or --ann approximate (IVF_SQ8), or leave --ann out"
        )
    return INDEX_TYPES_OF_ANN[ann]


def milvus_uri(catalogue: Catalogue, argument: str | None) -> str:
    """The URI pymilvus gets: an absolute Lite path ending in .db, or a server address."""
    if not argument:
        return str(Path(catalogue.path).resolve().parent / DEFAULT_LITE_FILE_NAME)
    if argument.startswith(("http://", "https://", "tcp://", "grpc://", "unix:")):
        return argument
    if not argument.endswith(".db"):
        raise FoldervisionError(
            f"--store milvus:{argument}: a Milvus Lite path must end in .db "
            "(e.g. milvus:vectors.db), or give a server as milvus:http://HOST:19530"
        )
    return str(Path(argument).expanduser().resolve())


def _catalogue_owner(catalogue: Catalogue) -> str:
    """This catalogue's id (a table of the store's own, so `--rebuild` keeps it)."""
    space = catalogue.store_space("milvus")
    space.execute(f"CREATE TABLE IF NOT EXISTS {OWNER_TABLE} (owner TEXT NOT NULL)")
    rows = space.execute(f"SELECT owner FROM {OWNER_TABLE}")
    if rows:
        return rows[0][0]
    owner = uuid.uuid4().hex
    with catalogue.transaction():
        space.execute(f"INSERT INTO {OWNER_TABLE} VALUES (?)", (owner,))
    return owner
