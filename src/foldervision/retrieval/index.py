"""A persistent, incremental index of a database folder: a catalogue of files plus a store.

The catalogue (`retrieval.catalogue`, SQLite) records each file's stable id, path, size and
mtime, its photo metadata (`retrieval.photos`, read from headers as the file is embedded), the
files that could not be decoded, and the embedder spec; the vector store (`retrieval.stores`)
holds one vector per id. Each batch of files and its vectors is written in
one transaction, so an interrupted run keeps what it finished, loses nothing and stores no file
twice: the next run embeds only what is still missing. On open, ids that only one side knows
(a crash between an external store's write and the catalogue's commit) are dropped; with the
default store that check compares two id summaries (`Catalogue.id_summary`), not 10^6 ids.

`update` compares the whole folder with the catalogue; `update_paths` only the paths a
watcher saw change (`retrieval.watch`), applying moves first so that moved files keep their
vectors. Both hold a caller's guard (the service's lock) only while they read or write the
index, never while files are decoded and embedded.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

import numpy as np

from foldervision.errors import FoldervisionError
from foldervision.images import DECODINGS, SkippedFile, is_image_file, list_image_files
from foldervision.retrieval.catalogue import Catalogue, FileState
from foldervision.retrieval.embedder import (
    DEFAULT_BATCH_SIZE,
    Embedder,
    EmbedderSpec,
    default_scales,
)
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.photo_metadata import PhotoMetadata, read_photo_metadata
from foldervision.retrieval.reranking import (
    Centring,
    Diffusion,
    QueryExpansion,
    Reranking,
    centred_order,
    diffused_order,
    expand_queries,
    rooted,
)
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.spec import DEFAULT_DECODING
from foldervision.retrieval.stores import VectorStore, open_store

DIFFUSION_CHUNK = 32
"""Queries diffused (or centred) at once (`ImageIndex.diffused`, `ImageIndex.centred`)."""
CENTRING_SAMPLE = 10_000
"""Stored vectors the centring mean is taken over, a seeded sample in larger collections: the
mean of 10,000 differs from the whole's by far less than photos differ from one another."""
CENTRING_DRIFT = 0.01
"""Share of the files a centring mean was taken over that may change before it is taken again:
1% of photos moves the mean by about 1% of the way to theirs, far less than photos differ."""
CENTRING_SETTING = "centring_mean"
"""The catalogue setting that keeps the mean, with the count of changes it was taken at."""

INDEX_FOLDER_NAME = ".foldervision"
INDEX_FILE_NAME = "index.sqlite"
CLIP_MODEL_PREFIX = "clip:"
"""How a CLIP embedder's spec names its model (`foldervision.clip.embedder.clip_spec`)."""
METADATA_BATCH = 512
"""Files read for metadata alone (an index made before `photos` existed) per transaction."""


def default_index_path(
    database_folder: str | os.PathLike[str], spec: EmbedderSpec | None = None
) -> Path:
    """`<database>/.foldervision/index.sqlite`: the index travels with the folder it describes.

    A CLIP model's vectors get their own file beside it (`index.clip-vit-b32.sqlite`), so a
    folder can be searched by example with the default vectors and by words with CLIP's; so do
    another pretrained backbone's (`index.efficientnet-lite2.sqlite`) or backbones side by side
    (`index.mobilenetv2+efficientnet-lite0.sqlite`), so trying one leaves the default index as
    it was."""
    from foldervision.models.pretrained import pretrained_backbones
    from foldervision.retrieval.settings import DEFAULT_MODEL

    folder = Path(database_folder) / INDEX_FOLDER_NAME
    if spec is not None and spec.model.startswith(CLIP_MODEL_PREFIX):
        name = re.sub(r"[^A-Za-z0-9._-]", "_", spec.model.removeprefix(CLIP_MODEL_PREFIX))
        return folder / f"index.{name}.sqlite"
    if spec is not None and spec.model != DEFAULT_MODEL and pretrained_backbones(spec.model):
        return folder / f"index.{spec.model}.sqlite"
    return folder / INDEX_FILE_NAME


def follow_existing_index(settings: IndexSettings, rebuild: bool = False) -> IndexSettings:
    """`settings` with decoding and scales decided: as asked, else as the existing index was
    built, else the defaults.

    An index built before a default changed (scaled decoding; multi-scale descriptors) keeps
    its way of embedding until the user asks otherwise (`--decoding scaled --rebuild`),
    instead of being refused. A new index, or one being rebuilt, takes the defaults.
    """
    if settings.decoding is not None and settings.scales is not None:
        return settings
    stored = None
    index_path = settings.index_path or default_index_path(settings.database)
    if not rebuild and index_path.is_file():
        with contextlib.closing(Catalogue.open(index_path)) as catalogue:
            stored = catalogue.stored_spec()
    decoding = settings.decoding
    if decoding is None:
        decoding = stored.decoding if stored and stored.decoding in DECODINGS else DEFAULT_DECODING
    scales = settings.scales
    if scales is None:
        same_model = stored is not None and stored.model == settings.model
        scales = stored.scales if same_model else default_scales(settings.model)
    return dataclasses.replace(settings, decoding=decoding, scales=scales)


def check_database_folder(folder: Path) -> Path:
    """The folder, or one line saying it is not one (before anything is created for it)."""
    if not folder.is_dir():
        raise FoldervisionError(f"{folder}: not a folder; pass a folder of images as the database.")
    return folder


@dataclass
class IndexUpdate:
    """What one update did; `embedded` lists exactly the files whose vectors were computed."""

    embedded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    """(source, target) of the files or folders given new paths with their vectors kept."""

    @property
    def changed_anything(self) -> bool:
        return bool(self.embedded or self.removed or self.skipped or self.moved)


@dataclass
class IndexedVectors:
    """Vectors of an index, row i belonging to `paths[i]` (under the database folder)."""

    paths: list[Path]
    vectors: np.ndarray
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


ProgressCallback = Callable[[int, int], None]
"""Called with (files done, files to embed) after each batch."""
Guard = AbstractContextManager[Any]
"""Held around each read and write of an update (the service's lock: searches wait for it)."""
UNGUARDED: Guard = contextlib.nullcontext()


class ImageIndex:
    """The index of one database folder, bound to the embedder spec its vectors came from."""

    def __init__(
        self, database_folder: Path, catalogue: Catalogue, store: VectorStore, spec: EmbedderSpec
    ) -> None:
        self.database_folder = database_folder
        self.catalogue = catalogue
        self.store = store
        self.spec = spec
        self._centring: dict[str, Any] | None = None

    @classmethod
    def open(
        cls, settings: IndexSettings, spec: EmbedderSpec, *, rebuild: bool = False
    ) -> ImageIndex:
        """Open (or create) the index; refuse one built with another embedder unless rebuilding.

        The store's `--ann` (in `settings.store_location`) is the store's to remember.
        """
        database_folder = check_database_folder(settings.database)
        catalogue = Catalogue.open(settings.index_path or default_index_path(database_folder, spec))
        try:
            if rebuild:
                catalogue.clear()
            catalogue.bind_to(spec)
            vector_store = open_store(settings.store_location, catalogue, spec)
        except BaseException:
            catalogue.close()
            raise
        index = cls(database_folder, catalogue, vector_store, spec)
        if rebuild:
            with catalogue.transaction():
                vector_store.remove(vector_store.ids())
        index._reconcile()
        return index

    @property
    def index_path(self) -> Path:
        return self.catalogue.path

    def close(self) -> None:
        self.store.close()
        self.catalogue.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stored_spec(self) -> EmbedderSpec | None:
        return self.catalogue.stored_spec()

    def _reconcile(self) -> None:
        """Drop ids only one side has: their files are embedded again on the next update.

        A store that keeps an id summary (`id_summary()`, the default store's: a few numbers
        kept by triggers) is compared by summary first; the ids themselves are read only when
        the summaries differ, or for a store without one.
        """
        store_summary = self.store.id_summary()
        if store_summary is not None and store_summary == self.catalogue.id_summary():
            return
        catalogue_ids = set(self.catalogue.ids().tolist())
        store_ids = set(self.store.ids().tolist())
        if catalogue_ids != store_ids:
            with self.catalogue.transaction():
                self.store.remove(sorted(store_ids - catalogue_ids))
                self.catalogue.remove_ids(sorted(catalogue_ids - store_ids))
                self.catalogue.count_changes(len(store_ids ^ catalogue_ids))
        if store_summary is not None:  # equal sets, yet the summaries differed: count again
            self.catalogue.recount_ids()

    # ----------------------------------------------------------------------------------------
    # Updating.

    def update(
        self,
        embedder: Embedder,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: ProgressCallback | None = None,
        *,
        guard: Guard = UNGUARDED,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexUpdate:
        """Bring the index in line with the folder: embed new or changed files, drop deleted ones.

        Files whose size and mtime match the index are not read at all; undecodable files are
        recorded as skipped and retried only once they change. Indexed files without photo
        metadata (an index from before it was kept) have their headers read, nothing more.
        `guard` is held around each read and write of the index but not while files are
        decoded and embedded, so searches go on meanwhile; `should_stop` is asked after
        each batch (what is left is done by the next update).
        """
        self._check_embedder(embedder)
        current = self.scan_folder()
        with guard:
            known = self.catalogue.known_states()
        update = IndexUpdate()
        self._apply(embedder, current, known, update, batch_size, progress, guard, should_stop)
        with guard:
            self._read_missing_metadata()
            if update.changed_anything or self.catalogue.updated_at() is None:
                self.catalogue.mark_updated()
            self.store.flush()  # persist the store's search structure
        return update

    def update_paths(
        self,
        embedder: Embedder,
        paths: Iterable[str],
        moves: Sequence[tuple[str, str]] = (),
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        guard: Guard = UNGUARDED,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexUpdate:
        """Bring only these paths (relative) in line with the folder: what a watcher saw change.

        A path that is an image file is embedded if new or changed; for any other (gone, or a
        folder) what the index knows at or below it is checked again. `moves` (source, target),
        in the order they happened, first give the files they moved their new paths, keeping
        ids and vectors, when the target is still the file the index knew (same size and
        mtime) or, for a folder, is a folder. The store's file is not rewritten (`flush`).
        """
        self._check_embedder(embedder)
        paths = set(paths)
        update = IndexUpdate()
        with guard:
            update.moved = self._move(moves)
            known = self.catalogue.known_states(under=paths)
        current = self.states_of(paths | set(known))
        self._apply(embedder, current, known, update, batch_size, None, guard, should_stop)
        if update.changed_anything:
            with guard:
                self.catalogue.mark_updated()
        return update

    def flush(self) -> None:
        """Write the store's search structure to disk (`update` does; `update_paths` not)."""
        self.store.flush()

    def _check_embedder(self, embedder: Embedder) -> None:
        if embedder.spec != self.spec:
            raise ValueError(f"{self.index_path}: embedder differs from the index's; reopen it.")

    def _apply(
        self,
        embedder: Embedder,
        current: dict[str, FileState],
        known: dict[str, FileState],
        update: IndexUpdate,
        batch_size: int,
        progress: ProgressCallback | None,
        guard: Guard,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Drop what `known` has and `current` lacks; embed what `current` has that differs."""
        update.removed = sorted(set(known) - set(current))
        with guard, self.catalogue.transaction():
            self.store.remove(self.catalogue.remove_paths(update.removed))
            self.catalogue.count_changes(len(update.removed))
        to_embed = [path for path, state in current.items() if known.get(path) != state]
        update.unchanged = len(current) - len(to_embed)
        if progress is not None:
            progress(0, len(to_embed))
        absolute = [self.database_folder / path for path in to_embed]
        for batch in embedder.embed_files(absolute, batch_size):
            metadata = [
                read_photo_metadata(path, current[self.relative(path)].mtime_ns)
                for path in batch.paths
            ]
            with guard:
                self._store_batch(batch.paths, batch.vectors, metadata, batch.skipped, current)
            update.embedded.extend(self.relative(path) for path in batch.paths)
            update.skipped.extend(batch.skipped)
            if progress is not None:
                progress(len(update.embedded) + len(update.skipped), len(to_embed))
            if should_stop is not None and should_stop():
                break

    def _move(self, moves: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Apply the moves that still describe the folder (see `update_paths`), in one
        transaction; return them."""
        applied = []
        with self.catalogue.transaction():
            for source, target in moves:
                known = self.catalogue.known_states(under=[source])
                if source in known:
                    moved = self.states_of([target]).get(target) == known[source]
                else:
                    moved = bool(known) and self._visible(target)
                    moved = moved and (self.database_folder / target).is_dir()
                if moved:
                    self.store.remove(self.catalogue.move_paths([(source, target)]))
                    applied.append((source, target))
        return applied

    def scan_folder(self) -> dict[str, FileState]:
        """Image files of the database folder (index files excluded) with their size and mtime."""
        states = {}
        for path in list_image_files(self.database_folder):
            relative = self.relative(path)
            if INDEX_FOLDER_NAME in Path(relative).parts:
                continue
            stat = path.stat()
            states[relative] = FileState(stat.st_size, stat.st_mtime_ns)
        return states

    def states_of(self, paths: Iterable[str]) -> dict[str, FileState]:
        """Size and mtime of those paths that are image files the index would hold now."""
        states = {}
        for relative in paths:
            path = self.database_folder / relative
            if not (self._visible(relative) and is_image_file(path)):
                continue
            try:
                stat = path.stat()
            except OSError:  # gone, or not reachable: not a file to hold
                continue
            if S_ISREG(stat.st_mode):
                states[relative] = FileState(stat.st_size, stat.st_mtime_ns)
        return states

    @staticmethod
    def _visible(relative: str) -> bool:
        """Not hidden: `list_image_files` skips hidden files and folders (the index's own)."""
        return bool(relative) and not any(part.startswith(".") for part in relative.split("/"))

    def relative(self, path: str | os.PathLike[str]) -> str:
        return Path(path).relative_to(self.database_folder).as_posix()

    def _store_batch(
        self,
        paths: list[Path],
        vectors: np.ndarray,
        metadata: list[PhotoMetadata],
        skipped: list[SkippedFile],
        states: dict[str, FileState],
    ) -> None:
        """One transaction per batch: a crash keeps whole batches or nothing of a batch."""
        file_rows = [(self.relative(path), states[self.relative(path)]) for path in paths]
        skipped_rows = [
            (self.relative(skip.path), states[self.relative(skip.path)], skip.reason)
            for skip in skipped
        ]
        with self.catalogue.transaction():
            self.catalogue.count_changes(len(file_rows) + len(skipped_rows))
            if file_rows:
                ids = self.catalogue.record_files(file_rows)
                self.store.upsert(ids, vectors)
                self.catalogue.photos.record(list(zip(ids.tolist(), metadata)))
            if skipped_rows:
                self.store.remove(self.catalogue.record_skipped(skipped_rows))

    def _read_missing_metadata(self) -> None:
        """Read the headers of indexed files with no `photos` row yet; their vectors stay."""
        if self.catalogue.photos.count() == len(self.catalogue):  # the usual case: one count
            return
        while missing := self.catalogue.photos.missing(METADATA_BATCH):
            rows = [
                (file_id, read_photo_metadata(self.database_folder / path, mtime_ns))
                for file_id, path, mtime_ns in missing
            ]
            with self.catalogue.transaction():
                self.catalogue.photos.record(rows)

    # ----------------------------------------------------------------------------------------
    # Reading.

    def vectors(self) -> IndexedVectors:
        """Every stored vector, in path order, with the file's path under the database folder."""
        files = self.catalogue.files()
        ids = np.asarray([file_id for file_id, _ in files], dtype=np.int64)
        paths = [self.database_folder / path for _, path in files]
        return IndexedVectors(paths, self.store.vectors(ids), ids)

    def vector_of(self, relative_path: str) -> np.ndarray | None:
        """The stored vector of one indexed file, or None if it is not indexed."""
        ids = self.catalogue.ids_of([relative_path], missing_ok=True)
        return self.store.vectors(ids)[0] if len(ids) else None

    def matching_ids(self, photo_filter: PhotoFilter | None) -> np.ndarray | None:
        """The ids a filter keeps (None: no filter, every id)."""
        if photo_filter is None or photo_filter.is_empty:
            return None
        return self.catalogue.photos.matching_ids(photo_filter)

    def search(
        self,
        query_vectors: np.ndarray,
        k: int,
        photo_filter: PhotoFilter | None = None,
        reranking: Reranking | None = None,
    ) -> list[list[tuple[str, float]]]:
        """For each query, up to k (relative path, Euclidean distance) pairs, nearest first.

        With a filter, the store searches only the files it keeps: the true top k among them.
        With a query expansion, each query is first expanded with its neighbours among those same
        files (`retrieval.reranking`), and the distances are the expanded query's. With a
        diffusion, the nearest `shortlist` are re-ordered (distances still the query's); with
        centring, re-scored, and the distances are the centred ones (plain where centring does
        not apply: `applied`).
        """
        ids = self.matching_ids(photo_filter)
        if ids is not None and not len(ids):
            return [[] for _ in np.atleast_2d(query_vectors)]
        query_vectors = np.atleast_2d(query_vectors)
        reranking = self.applied(reranking)
        if isinstance(reranking, Diffusion):
            distances, ids = self.diffused(query_vectors, k, reranking, ids)
        elif isinstance(reranking, Centring):
            distances, ids = self.centred(query_vectors, k, reranking, ids)
        else:
            if isinstance(reranking, QueryExpansion):
                query_vectors = self.expanded_queries(query_vectors, reranking, ids)
            distances, ids = self.store.search(query_vectors, k, ids=ids)
        paths = self.catalogue.paths_of(np.unique(ids[ids >= 0]))
        return [
            [(paths[int(i)], float(d)) for d, i in zip(row_d, row_i) if int(i) in paths]
            for row_d, row_i in zip(distances, ids)
        ]

    def expanded_queries(
        self, query_vectors: np.ndarray, expansion: QueryExpansion, ids: np.ndarray | None
    ) -> np.ndarray:
        """The queries expanded with their nearest stored vectors among `ids` (None: all)."""
        distances, found, vectors = self.neighbours_with_vectors(
            query_vectors, expansion.first_search_size, ids
        )
        return expand_queries(query_vectors, vectors, distances, expansion)

    def diffused(
        self, query_vectors: np.ndarray, k: int, diffusion: Diffusion, ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) distances and ids among `ids` (None: all), in diffused order. Queries go
        `DIFFUSION_CHUNK` at a time: each holds its shortlist's vectors (1 MB at 1280-d)."""
        kept_distances = np.full((len(query_vectors), k), np.inf, np.float32)
        kept_ids = np.full((len(query_vectors), k), -1, np.int64)
        for start in range(0, len(query_vectors), DIFFUSION_CHUNK):
            distances, found, vectors = self.neighbours_with_vectors(
                query_vectors[start : start + DIFFUSION_CHUNK], diffusion.first_search_size(k), ids
            )
            for offset in range(len(found)):
                order = diffused_order(distances[offset], vectors[offset], diffusion)[:k]
                kept_distances[start + offset, : len(order)] = distances[offset, order]
                kept_ids[start + offset, : len(order)] = found[offset, order]
        return kept_distances, kept_ids

    def centred(
        self, query_vectors: np.ndarray, k: int, centring: Centring, ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) centred distances and ids among `ids` (None: all), nearest first."""
        mean = self.centring_mean()
        kept_distances = np.full((len(query_vectors), k), np.inf, np.float32)
        kept_ids = np.full((len(query_vectors), k), -1, np.int64)
        for start in range(0, len(query_vectors), DIFFUSION_CHUNK):
            chunk = query_vectors[start : start + DIFFUSION_CHUNK]
            distances, found, vectors = self.neighbours_with_vectors(
                chunk, centring.first_search_size(k), ids
            )
            for offset in range(len(found)):
                order, centred = centred_order(
                    chunk[offset], distances[offset], vectors[offset], mean
                )
                kept_distances[start + offset, : len(order[:k])] = centred[:k]
                kept_ids[start + offset, : len(order[:k])] = found[offset, order[:k]]
        return kept_distances, kept_ids

    def applied(self, reranking: Reranking | None) -> Reranking | None:
        """The re-ranking a search really applies: None for none, or for centring on vectors
        it does not suit (negative values, as CLIP's) or an empty index."""
        if reranking is None or not reranking.is_on:
            return None
        if isinstance(reranking, Centring) and self.centring_mean() is None:
            return None
        return reranking

    def centring_mean(self) -> np.ndarray | None:
        """The collection's mean of rooted vectors (`reranking.Centring`), or None when its
        vectors have negative values or there are none.

        Kept in the catalogue, and in memory, with the count of files changed when it was
        taken (`Catalogue.changes`): taken again, over at most `CENTRING_SAMPLE` vectors, once
        more than `CENTRING_DRIFT` of the files it was taken over have changed since, so a
        library where photos keep arriving does not pay for it on every search. An index that
        cannot be written (a read-only folder) keeps it in memory only.
        """
        changes = self.catalogue.changes()
        kept = self._centring or self._stored_centring()
        if kept is None or not self._centring_still_holds(kept, changes):
            kept = {
                "spec": self._stored_spec_form(),
                "changes": changes,
                "files": len(self.catalogue),
                "mean": self.take_centring_mean(),
            }
            self._keep_centring(kept)
        self._centring = kept
        return kept["mean"] if len(kept["mean"]) else None

    def _centring_still_holds(self, kept: dict[str, Any], changes: int) -> bool:
        if kept["spec"] != self._stored_spec_form() or changes < kept["changes"]:
            return False
        return changes - kept["changes"] <= CENTRING_DRIFT * max(kept["files"], 1)

    def _stored_spec_form(self) -> Any:
        """The spec as JSON gives it back (tuples become lists), to compare with a kept one."""
        return json.loads(json.dumps(self.spec.to_dict()))

    def _stored_centring(self) -> dict[str, Any] | None:
        value = self.catalogue.setting(CENTRING_SETTING)
        if not value:
            return None
        try:
            stored = json.loads(value)
            stored["mean"] = np.frombuffer(base64.b64decode(stored["mean"]), np.float64)
            if {"spec", "changes", "files"} <= set(stored):
                return stored
        except (ValueError, TypeError, KeyError):  # not a mean this version wrote
            pass
        return None

    def take_centring_mean(self) -> np.ndarray:
        """The mean over a seeded sample; empty when the vectors cannot be rooted."""
        ids = self.catalogue.ids()  # in id order
        if len(ids) > CENTRING_SAMPLE:
            ids = np.sort(np.random.default_rng(0).choice(ids, CENTRING_SAMPLE, replace=False))
        if not len(ids):
            return np.zeros(0)
        vectors = self.store.vectors(ids)
        if float(vectors.min()) < 0.0:
            return np.zeros(0)
        return rooted(vectors).mean(axis=0)

    def _keep_centring(self, kept: dict[str, Any]) -> None:
        mean = base64.b64encode(np.asarray(kept["mean"], np.float64).tobytes()).decode()
        value = json.dumps({**kept, "mean": mean})
        try:
            with self.catalogue.transaction():
                self.catalogue.set_setting(CENTRING_SETTING, value)
        except sqlite3.Error:  # a read-only or busy index: the mean stays in memory
            pass

    def neighbours_with_vectors(
        self, query_vectors: np.ndarray, count: int, ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's `count` nearest stored vectors among `ids`: (Q, count) distances
        (non-finite where missing), ids (-1 where missing) and (Q, count, D) vectors."""
        distances, found = self.store.search(query_vectors, count, ids=ids)
        valid = found >= 0
        vectors = np.zeros((*found.shape, query_vectors.shape[1]), np.float32)
        if valid.any():
            unique, inverse = np.unique(found[valid], return_inverse=True)
            vectors[valid] = self.store.vectors(unique)[inverse]
        return np.where(valid, distances, np.inf), found, vectors

    def skipped_files(self) -> list[SkippedFile]:
        return [
            SkippedFile(str(self.database_folder / path), reason)
            for path, reason in self.catalogue.skipped()
        ]

    def __len__(self) -> int:
        return len(self.catalogue)
