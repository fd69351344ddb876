"""The retrieval service: one object that opens an index, keeps it current and answers searches.

The command line, the assignment's script and the web page only call this. It stays warm
between calls: the network is built once, the store's search structure is loaded once, and
searches from several threads (a web server) are safe. Its answers name database files by
their path relative to the database folder; `QueryResult.in_folder` puts them back under it.

    with RetrievalService.open(IndexSettings("images_database")) as service:
        service.update()
        results, skipped = service.search_files(["query_images/q1.png"], k=4)
        summer = photo_filter(service.database, taken_after="2023-06", taken_before="2023-09")
        results, skipped = service.search_files(["query_images/q1.png"], 4, summer)
        newest = service.list_files(summer, sort="taken", limit=50)

Every search, duplicate check and listing takes an optional `PhotoFilter`
(`retrieval.filters`): the catalogue turns it into the matching ids and the store searches
only those, so a filtered answer is the true top k among the photos it keeps.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldervision.errors import EmptyIndexError, FoldervisionError, TopKError
from foldervision.images import ImageLoadError, SkippedFile
from foldervision.library.moves import Move
from foldervision.retrieval.duplicates import DuplicateGroup
from foldervision.retrieval.embedder import Embedder, EmbedderSpec, load_embedder
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.index import (
    ImageIndex,
    IndexUpdate,
    ProgressCallback,
    follow_existing_index,
)
from foldervision.retrieval.keeper import FileFacts
from foldervision.retrieval.photo_metadata import camera_name
from foldervision.retrieval.photos import PhotoEntry
from foldervision.retrieval.reranking import Reranking
from foldervision.retrieval.search import DEFAULT_TOP_K, Match, QueryResult
from foldervision.retrieval.settings import IndexSettings

MAX_TOP_K = 100
"""The most matches one query may ask for: a web page's grid, a terminal's screen."""


@dataclass(frozen=True)
class IndexInfo:
    """What a person wants to know about an index before trusting its answers."""

    database: str
    index_path: str
    images: int
    skipped: int
    embedder: str
    updated_at: float | None


@dataclass(frozen=True)
class LibraryOverview:
    """What a page browsing the library shows in its header and filter menus."""

    images: int
    skipped: int
    taken_first: str | None
    taken_last: str | None
    updated_at: float | None
    spec: EmbedderSpec
    cameras: list[tuple[str, int]]
    """(camera name, photos), most photos first: a name is a valid `camera` filter."""
    folders: list[tuple[str, int]]
    """(folder, photos at or below it), in path order: each a valid `under` filter."""


class RetrievalService:
    """An open index of one database folder with the embedder that made it."""

    def __init__(self, index: ImageIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder
        self._lock = threading.RLock()
        self._updating = threading.Lock()

    @classmethod
    def open(
        cls, settings: IndexSettings, *, rebuild: bool = False, embedder: Embedder | None = None
    ) -> RetrievalService:
        """Open (or create) the index `settings` describe; `rebuild` forgets its vectors first.

        `embedder` lets a caller that already holds a built embedder reuse it, or embed
        elsewhere (Ray workers); its spec then decides, not the settings' model options.
        """
        settings = follow_existing_index(settings, rebuild)
        embedder = embedder or load_embedder(settings)
        index = ImageIndex.open(settings, embedder.spec, rebuild=rebuild)
        return cls(index, embedder)

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> RetrievalService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def database(self) -> Path:
        """The database folder as the caller named it; answers' paths are relative to it."""
        return self.index.database_folder

    @property
    def index_path(self) -> Path:
        return self.index.index_path

    def update(
        self,
        progress: ProgressCallback | None = None,
        embedder: Embedder | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexUpdate:
        """Embed new or changed files and drop deleted ones; unchanged files are not read.

        `embedder` embeds this update instead (e.g. on Ray workers); it has the same spec.
        Searches go on while files are embedded: the lock is held only to read and write the
        index (`ImageIndex.update`); one update runs at a time.
        """
        with self._updating:
            return self.index.update(
                embedder or self.embedder,
                progress=progress,
                guard=self._lock,
                should_stop=should_stop,
            )

    def update_paths(
        self,
        paths: Iterable[str],
        moves: Sequence[tuple[str, str]] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> IndexUpdate:
        """Bring only these relative paths in line with the folder, moves first: a watcher's
        batch (`retrieval.watch`; see `ImageIndex.update_paths`)."""
        with self._updating:
            return self.index.update_paths(
                self.embedder, paths, moves, guard=self._lock, should_stop=should_stop
            )

    def flush(self) -> None:
        """Write the store's search structure to disk now (`update_paths` leaves it in memory:
        rewriting it after every photo would cost more than the photo)."""
        with self._lock:
            self.index.flush()

    def info(self) -> IndexInfo:
        with self._lock:
            return IndexInfo(
                database=str(self.database),
                index_path=str(self.index_path),
                images=len(self.index),
                skipped=len(self.index.catalogue.skipped()),
                embedder=self.index.spec.describe(),
                updated_at=self.index.catalogue.updated_at(),
            )

    def vector_index_summary(self) -> str | None:
        """The store's search structure in one line (for the faiss store: kind, settings and
        the recall tuning measured); None when the store says nothing of it."""
        with self._lock:
            return self.index.store.index_description().get("summary")

    def overview(self) -> LibraryOverview:
        """Counts, capture dates, cameras and folders, from the catalogue alone (no scan)."""
        with self._lock:
            catalogue = self.index.catalogue
            first, last = catalogue.photos.taken_range()
            cameras: Counter[str] = Counter()
            for make, model, files in catalogue.photos.counts("make", "model"):
                name = camera_name(make, model)
                if name is not None:
                    cameras[name] += files
            return LibraryOverview(
                images=len(self.index),
                skipped=len(catalogue.skipped()),
                taken_first=first,
                taken_last=last,
                updated_at=catalogue.updated_at(),
                spec=self.index.spec,
                cameras=cameras.most_common(),
                folders=_with_parent_folders(catalogue.photos.folders()),
            )

    # ----------------------------------------------------------------------------------------
    # Searching. Every answer names matches by their path relative to the database folder.

    def search_files(
        self,
        query_paths: Sequence[str | os.PathLike[str]],
        k: int = DEFAULT_TOP_K,
        photo_filter: PhotoFilter | None = None,
        reranking: Reranking | None = None,
    ) -> tuple[list[QueryResult], list[SkippedFile]]:
        """Embed query files exactly as the database was embedded, then find their neighbours
        (among the photos `photo_filter` keeps, when given; re-ranked by `reranking`)."""
        self._check_searchable(k)
        results: list[QueryResult] = []
        skipped: list[SkippedFile] = []
        for batch in self.embedder.embed_files(list(query_paths)):
            skipped.extend(batch.skipped)
            if batch.paths:
                answers = self._search_vectors(batch.vectors, k, photo_filter, reranking)
                for path, matches in zip(batch.paths, answers):
                    results.append(_result(str(Path(path)), matches, self._applied(reranking)))
        return results, skipped

    def search_texts(
        self,
        texts: Sequence[str],
        k: int = DEFAULT_TOP_K,
        photo_filter: PhotoFilter | None = None,
        reranking: Reranking | None = None,
    ) -> list[QueryResult]:
        """Search by words: only a CLIP index has a text side (`embed_texts`) to embed them."""
        embed_texts = getattr(self.embedder, "embed_texts", None)
        if embed_texts is None:
            raise FoldervisionError(
                f"{self.index_path}: made by {self.index.spec.model}, which has no text side; "
                "index the folder with --model clip-vit-b32 (or clip:FOLDER) to search by words."
            )
        self._check_searchable(k)
        vectors = embed_texts(list(texts))
        answers = self._search_vectors(vectors, k, photo_filter, reranking)
        applied = self._applied(reranking)
        return [_result(text, matches, applied) for text, matches in zip(texts, answers)]

    def search_bytes(
        self,
        data: bytes,
        name: str,
        k: int = DEFAULT_TOP_K,
        photo_filter: PhotoFilter | None = None,
        reranking: Reranking | None = None,
    ) -> QueryResult:
        """Search with an image held in memory (a web upload); bad bytes raise ImageLoadError."""
        self._check_searchable(k)
        vector = self.embedder.embed_bytes(data, name)
        matches = self._search_vectors(vector[np.newaxis], k, photo_filter, reranking)[0]
        return _result(name, matches, self._applied(reranking))

    def search_folder_file(
        self,
        relative_path: str,
        k: int = DEFAULT_TOP_K,
        folder: Path | None = None,
        photo_filter: PhotoFilter | None = None,
        reranking: Reranking | None = None,
    ) -> QueryResult:
        """Search with a file named by its path relative to `folder` (default: the database).

        An indexed database file is searched by its stored vector, with no decoding; any other
        file (of a query folder, or not indexed yet) is decoded now. Messages, and the answer's
        query, name it by `relative_path`: an unreadable file raises ImageLoadError.
        """
        self._check_searchable(k)
        if folder is None:
            with self._lock:
                vector = self.index.vector_of(relative_path)
            if vector is not None:
                matches = self._search_vectors(vector, k, photo_filter, reranking)[0]
                return _result(relative_path, matches, self._applied(reranking))
        try:
            data = ((folder or self.database) / relative_path).read_bytes()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ImageLoadError(f"{relative_path}: cannot read ({reason}).") from None
        return self.search_bytes(data, relative_path, k, photo_filter, reranking)

    def sample_files(self, count: int, photo_filter: PhotoFilter | None = None) -> list[str]:
        """About `count` indexed files spread evenly over the index (relative paths, in path
        order): something to pick a first query from when there is no query folder."""
        with self._lock:
            files = self.index.catalogue.files()
            kept = self.index.matching_ids(photo_filter)
        if kept is not None:
            keep = set(kept.tolist())
            files = [(file_id, path) for file_id, path in files if file_id in keep]
        paths = [path for _, path in files]
        step = max(1, len(paths) // max(1, count))
        return paths[::step][:count]

    def list_files(
        self,
        photo_filter: PhotoFilter | None = None,
        sort: str = "taken",
        offset: int = 0,
        limit: int = 100,
    ) -> list[PhotoEntry]:
        """A page of the indexed files the filter keeps, with their metadata: newest first
        ("taken"; files without metadata last) or by "path". For browsing the library."""
        with self._lock:
            return self.index.catalogue.photos.entries(
                photo_filter or PhotoFilter(), sort, offset, limit
            )

    def count_files(self, photo_filter: PhotoFilter | None = None) -> int:
        """How many indexed files the filter keeps (all of them without one)."""
        with self._lock:
            kept = self.index.matching_ids(photo_filter)
            return len(self.index) if kept is None else len(kept)

    def find_duplicates(
        self,
        threshold: float | None = None,
        photo_filter: PhotoFilter | None = None,
        sort: str = "path",
        keep_under: Sequence[str | os.PathLike[str]] = (),
    ) -> list[DuplicateGroup]:
        """Groups of copies of one photo among the photos the filter keeps, each with the copy
        to keep (`retrieval.duplicates`), by first path or newest first (`sort="taken"`);
        files under a `keep_under` folder (inside the database) are always kept."""
        from foldervision.retrieval.duplicates import DuplicateSettings, find_duplicates

        settings = DuplicateSettings() if threshold is None else DuplicateSettings(threshold)
        protected = self.folders_in_database(keep_under)
        with self._lock:
            among = self.index.matching_ids(photo_filter)
            return find_duplicates(self.index, settings, protected, among=among, sort=sort)

    def warm_up(self) -> None:
        """Build and trace the network and load the store now, so the first query does not wait."""
        spec = self.embedder.spec
        channels = 1 if spec.color_mode == "grayscale" else 3
        blank = np.zeros((1, spec.image_size, spec.image_size, channels), np.uint8)
        vector = self.embedder.embed_pixels(blank)
        if len(self.index):
            self._search_vectors(vector, 1)

    def _search_vectors(
        self,
        query_vectors: np.ndarray,
        k: int,
        photo_filter: PhotoFilter | None = None,
        reranking: Reranking | None = None,
    ) -> list[list[Match]]:
        """Ranked matches for each query vector, among the photos the filter keeps."""
        with self._lock:
            neighbours = self.index.search(query_vectors, k, photo_filter, reranking)
        return [
            [Match(rank, path, distance) for rank, (path, distance) in enumerate(row, start=1)]
            for row in neighbours
        ]

    def _applied(self, reranking: Reranking | None) -> Reranking | None:
        """The re-ranking the index really applied (centring is not, to CLIP's vectors)."""
        with self._lock:
            return self.index.applied(reranking)

    def _check_searchable(self, k: int) -> None:
        check_top_k(k)
        if len(self.index.store) == 0:
            raise EmptyIndexError(
                f"{self.database}: the index holds no images yet; add images to the folder "
                "and index it."
            )

    # ----------------------------------------------------------------------------------------
    # Acting on duplicates: copies moved out of the way with a journal, and back
    # (`library.moves`). Paths in groups are relative to the database, as find_duplicates
    # gives them.

    def folders_in_database(self, folders: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Folders (absolute, or relative to the working folder) as paths relative to the
        database; one outside it is an error, since none of its files is indexed here."""
        database = self.database.resolve()
        relative = []
        for folder in folders:
            try:
                relative.append(Path(folder).resolve().relative_to(database).as_posix())
            except ValueError:
                raise FoldervisionError(
                    f"{folder}: not inside {self.database}; only a folder of it can be kept."
                ) from None
        return relative

    def plan_duplicate_moves(
        self,
        groups: Sequence[DuplicateGroup],
        destination: str | os.PathLike[str],
        keep_under: Sequence[str | os.PathLike[str]] = (),
    ) -> list[Move]:
        """Every file of `groups` but its keeper and protected files, to move into
        `destination` at the same relative path. Nothing is touched (a dry run prints this)."""
        from foldervision.library.moves import plan_moves
        from foldervision.retrieval.keeper import is_protected

        protected = self.folders_in_database(keep_under)
        to_move = [
            tuple(
                path
                for path in group.files
                if path != group.keep and not is_protected(path, protected)
            )
            for group in groups
        ]
        return plan_moves(self.database, to_move, Path(destination))

    def move_duplicates(
        self,
        groups: Sequence[DuplicateGroup],
        destination: str | os.PathLike[str],
        keep_under: Sequence[str | os.PathLike[str]] = (),
        journal: str | os.PathLike[str] | None = None,
    ) -> tuple[list[Move], Path]:
        """Move what `plan_duplicate_moves` lists, journaling each file first (default journal:
        a new file in `destination`), then update the index, which the moved files leave."""
        from foldervision.library.moves import new_journal_path, run_moves

        with self._lock:
            moves = self.plan_duplicate_moves(groups, destination, keep_under)
            if not moves:
                raise FoldervisionError("nothing to move: every copy is a keeper or protected.")
            journal_path = Path(journal) if journal else new_journal_path(Path(destination))
            run_moves(moves, journal_path)
            self.update()
        return moves, journal_path

    def undo_moves(self, journal: str | os.PathLike[str]) -> int:
        """Put back every file the journal moved (hash-checked), then update the index."""
        from foldervision.library.moves import undo_moves

        with self._lock:
            moved_back = undo_moves(Path(journal))
            self.update()
        return moved_back

    def file_facts(self, paths: Sequence[str]) -> list[FileFacts]:
        """Pixel size, format, bytes, capture time, camera of database files (relative paths),
        from their headers: what a person compares when choosing the copy to keep."""
        from foldervision.retrieval.keeper import read_facts

        return [read_facts(self.database, path) for path in paths]


def _result(query: str, matches: list[Match], reranking: Reranking | None) -> QueryResult:
    """The answer, saying how it was re-ranked when it was (its distances then differ)."""
    described = reranking.describe() if reranking is not None else None
    return QueryResult(query, matches, described)


def check_top_k(k: int) -> None:
    """The one check of k for every caller: a command checks it before indexing, too."""
    if not 1 <= k <= MAX_TOP_K:
        raise TopKError(f"k must be between 1 and {MAX_TOP_K}, got {k}.")


def _with_parent_folders(direct: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(folder, files at or below it) for every folder above a file, from (folder, files
    directly in it); the database folder itself ("") is left out."""
    totals: Counter[str] = Counter()
    for folder, files in direct:
        parts = folder.split("/") if folder else []
        for depth in range(1, len(parts) + 1):
            totals["/".join(parts[:depth])] += files
    return sorted(totals.items())
