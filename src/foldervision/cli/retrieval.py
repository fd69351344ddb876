"""Image search commands: `index`, `search`, `evaluate-retrieval` and `duplicates`.

stdout carries only results (tab-separated lines, or one JSON object per line with --json);
progress, skipped files and prompts go to stderr, so the commands pipe cleanly.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from foldervision.cli.app import app, console, plural
from foldervision.cli.options import (
    CentreOption,
    DiffuseOption,
    ExpandOption,
    RebuildOption,
    WatchOption,
    takes_index_settings,
    takes_photo_filter,
)
from foldervision.images import SkippedFile, list_image_files
from foldervision.retrieval.duplicates import DuplicateGroup
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.index import IndexUpdate, follow_existing_index
from foldervision.retrieval.reranking import (
    DEFAULT_NEIGHBOURS,
    Centring,
    Diffusion,
    QueryExpansion,
    Reranking,
)
from foldervision.retrieval.search import DEFAULT_TOP_K, QueryResult
from foldervision.retrieval.service import RetrievalService, check_top_k
from foldervision.retrieval.settings import IndexSettings

if TYPE_CHECKING:
    from foldervision.retrieval.watch import FolderWatcher

DEFAULT_QUERY_FOLDER = Path("query_images")
DEFAULT_INTERACTIVE_SHEET = Path("search_results.png")


@app.command("index")
@takes_index_settings
def index_command(
    database: Path = typer.Argument(..., help="Folder of images to make searchable."),
    *,
    settings: IndexSettings,
    rebuild: RebuildOption = False,
    ray: bool = typer.Option(
        False, "--ray", help="Embed on a local Ray cluster using this machine's cores."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Embed on an existing Ray cluster (e.g. ray://HEAD:10001)."
    ),
    watch: WatchOption = False,
) -> None:
    """Build or update the search index of a folder (only new or changed files are embedded).

    With --watch it then keeps the index current until Ctrl-C."""
    embedder = None
    settings = follow_existing_index(settings, rebuild)  # the Ray workers decode as the index did
    if ray or ray_address is not None:
        from foldervision.retrieval.ray_embedding import ray_embedder

        embedder = ray_embedder(settings, address=ray_address)
    with open_updated_service(settings, rebuild=rebuild, embedder=embedder) as service:
        info = service.info()
        console.print(f"index: {info.index_path} ({info.images} images)")
        summary = service.vector_index_summary()
        if summary:
            console.print(f"vector index: {summary}")
        if watch:
            watch_until_stopped(service)


@app.command("search")
@takes_photo_filter
@takes_index_settings
def search_command(
    query: list[Path] | None = typer.Argument(None, help="Query image file(s)."),
    database: Path = typer.Option(..., "--database", "-d", help="Folder of images to search."),
    text: list[str] | None = typer.Option(
        None,
        "--text",
        help="Search by words, e.g. --text 'a red flower on grass' (repeatable): needs a CLIP "
        "index; --model defaults to clip-vit-b32 then.",
    ),
    queries: Path | None = typer.Option(
        None, "--queries", help="Search with every image in this folder (batch)."
    ),
    top_k: int = typer.Option(DEFAULT_TOP_K, "-k", "--top-k", help="Matches per query."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per query on stdout."),
    expand: ExpandOption = DEFAULT_NEIGHBOURS,
    diffuse: DiffuseOption = False,
    centre: CentreOption = False,
    sheet: Path | None = typer.Option(None, "--sheet", help="Write a contact-sheet PNG here."),
    pick_from: Path = typer.Option(
        DEFAULT_QUERY_FOLDER,
        "--pick-from",
        help="Folder listed for you to choose from when no query is given on a terminal.",
    ),
    *,
    settings: IndexSettings,
    photo_filter: PhotoFilter,
    rebuild: RebuildOption = False,
    no_update: bool = typer.Option(
        False,
        "--no-update",
        help="Search the index as it is, without checking the folder for changes first "
        "(that check stats every file: seconds for 10^6 files).",
    ),
) -> None:
    """Find the images of DATABASE nearest to each query (the index is updated first).

    With filters, the nearest among the photos they keep (taken when, by which camera, where).
    """
    check_top_k(top_k)
    reranking = chosen_reranking(expand, diffuse, centre)
    texts = list(text or [])
    query_paths = list(query or [])
    if queries is not None:
        query_paths += list_image_files(queries)
    if not query_paths and not texts:
        query_paths = [pick_query(pick_from)]
        sheet = sheet or DEFAULT_INTERACTIVE_SHEET
    settings = with_text_model(settings) if texts else settings
    with open_updated_service(settings, rebuild=rebuild, update=not no_update) as service:
        report_filter(service, photo_filter)
        results = service.search_texts(texts, top_k, photo_filter, reranking) if texts else []
        skipped: list[SkippedFile] = []
        if query_paths:
            image_results, skipped = service.search_files(
                query_paths, top_k, photo_filter, reranking
            )
            results += image_results
        results = [result.in_folder(service.database) for result in results]
    report_skipped(skipped, "query")
    if not results:
        raise ValueError(f"{query_paths[0]}: no query image could be read; pass a readable image.")
    if isinstance(reranking, Centring) and any(result.reranking is None for result in results):
        console.print(
            "--centre: this index's vectors have negative values (CLIP's), which centring "
            "does not suit; searched without re-ranking.",
            markup=False,
        )
    print_results(results, as_json)
    if sheet is not None:
        from foldervision.retrieval.sheet import write_contact_sheet

        console.print(f"contact sheet: {write_contact_sheet(results, sheet)}")


def chosen_reranking(expand: int, diffuse: bool, centre: bool) -> Reranking:
    """The one re-ranking asked for: `--expand N`, `--diffuse` or `--centre` (or none)."""
    if sum([expand > 0, diffuse, centre]) > 1:
        raise ValueError("--expand, --diffuse and --centre: choose one re-ranking, not two.")
    if diffuse:
        return Diffusion()
    return Centring() if centre else QueryExpansion(expand)


def with_text_model(settings: IndexSettings) -> IndexSettings:
    """Words are searched in a CLIP index: the default model becomes the default CLIP model."""
    import dataclasses

    from foldervision.clip.models import DEFAULT_CLIP_MODEL
    from foldervision.retrieval.settings import DEFAULT_MODEL

    if settings.model != DEFAULT_MODEL:
        return settings
    return dataclasses.replace(settings, model=DEFAULT_CLIP_MODEL)


@app.command("evaluate-retrieval")
@takes_index_settings
def evaluate_retrieval_command(
    database: Path = typer.Argument(
        ..., metavar="LABELLED_FOLDER", help="Folder with one subfolder per class."
    ),
    top_k: int = typer.Option(DEFAULT_TOP_K, "-k", "--top-k", help="k of precision@k."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    expand: ExpandOption = DEFAULT_NEIGHBOURS,
    diffuse: DiffuseOption = False,
    centre: CentreOption = False,
    *,
    settings: IndexSettings,
    rebuild: RebuildOption = False,
) -> None:
    """Leave-one-out precision@1, @4 (and @k), mAP and the N-S score (relevant images among
    the top 4, 0 to 4): each image queries all the others of the folder."""
    from foldervision.retrieval.evaluate import evaluate_labelled_folder

    reranking = chosen_reranking(expand, diffuse, centre)
    with open_updated_service(settings, rebuild=rebuild) as service:
        report = evaluate_labelled_folder(service.index, top_k, reranking)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    lines = [("precision@1", report["precision_at_1"]), ("precision@4", report["precision_at_4"])]
    if top_k not in (1, 4):
        lines.append((f"precision@{top_k}", report["precision_at_k"]))
    lines += [("mAP", report["mean_average_precision"]), ("N-S", report["ns_score"])]
    for name, value in lines:
        print(f"{name}\t{value:.4f}")
    print(f"queries\t{report['queries']}")


@app.command("duplicates")
@takes_photo_filter
@takes_index_settings
def duplicates_command(
    database: Path = typer.Argument(..., help="Folder of images to check for near-duplicates."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Largest Euclidean distance between the global vectors of two copies (default "
        "0.9; every pair is also checked by its keypoints and pixels; lower is stricter).",
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per group on stdout."),
    sheet: Path | None = typer.Option(None, "--sheet", help="Write a contact-sheet PNG here."),
    sort: str = typer.Option(
        "path",
        "--sort",
        help="Order of the groups: path (by their first file) or taken (newest photo first).",
    ),
    move_to: Path | None = typer.Option(
        None,
        "--move-to",
        help="Move every copy but the suggested keeper into this folder (same relative paths), "
        "with a journal there that `foldervision undo` reads. Nothing is deleted.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --move-to: print what would move; touch nothing."
    ),
    keep_under: list[Path] = typer.Option(
        [], "--keep-under", help="Never move files under this folder (repeatable)."
    ),
    *,
    settings: IndexSettings,
    photo_filter: PhotoFilter,
    rebuild: RebuildOption = False,
) -> None:
    """Groups of copies of one photo (resized, re-saved, cropped, turned, mirrored ...), each
    with the copy to keep; `--move-to` moves the others out of the way, journaled.

    With filters, only pairs of photos they both keep."""
    if dry_run and move_to is None:
        raise ValueError("--dry-run shows what --move-to FOLDER would move; pass --move-to too.")
    with open_updated_service(settings, rebuild=rebuild) as service:
        report_filter(service, photo_filter)
        found = service.find_duplicates(threshold, photo_filter, sort, keep_under)
        groups = [group.in_folder(service.database) for group in found]
        if move_to is not None:
            from foldervision.cli.library import move_duplicates

            return move_duplicates(service, found, move_to, keep_under, dry_run, as_json)
    for number, group in enumerate(groups, start=1):
        if as_json:
            print(json.dumps(group.to_dict(), ensure_ascii=False))
            continue
        for path, distance in zip(group.files, group.distances):
            role = "keep" if path == group.keep else "duplicate"
            print(f"{number}\t{distance:.4f}\t{path}\t{role}")
    files = sum(len(group.files) for group in groups)
    console.print(f"{plural(len(groups), 'group')} of near-duplicates, {plural(files, 'file')}")
    if sheet is not None and groups:
        from foldervision.retrieval.sheet import write_contact_sheet

        console.print(f"contact sheet: {write_contact_sheet(duplicate_rows(groups), sheet)}")


def duplicate_rows(groups: list[DuplicateGroup]) -> list[QueryResult]:
    """Draw each group as a sheet row: its first file, then the others with their distance.

    The sheet opens the files at these paths: pass groups already under the database."""
    from foldervision.retrieval.search import Match

    return [
        QueryResult(
            group.files[0],
            [
                Match(rank, path, distance)
                for rank, (path, distance) in enumerate(
                    zip(group.files[1:], group.distances[1:]), start=1
                )
            ],
        )
        for group in groups[:MAX_SHEET_GROUPS]
    ]


MAX_SHEET_GROUPS = 40
"""A contact sheet taller than this is unreadable; the full list is on stdout."""


# --------------------------------------------------------------------------------------------
# Shared steps.


def open_updated_service(
    settings: IndexSettings,
    *,
    rebuild: bool = False,
    update: bool = True,
    embedder: Embedder | None = None,
) -> RetrievalService:
    """Open the folder's index and bring it up to date, showing progress on stderr.

    `embedder` (e.g. Ray workers) embeds the files; this process still writes the index.
    """
    service = RetrievalService.open(settings, rebuild=rebuild, embedder=embedder)
    if not update:
        return service
    try:
        with _progress_bar() as progress:
            task = progress.add_task("embedding", total=None)

            def show(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            changes = service.update(progress=show)
    except BaseException:
        service.close()
        raise
    report_update(changes)
    return service


class ImagesPerSecondColumn(ProgressColumn):
    """Embedding speed, so a slow disk or a busy CPU shows while it happens."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} images/s" if task.speed else "")


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ImagesPerSecondColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a pipe or a log gets the summary line alone
    )


def report_update(update: IndexUpdate) -> None:
    report_skipped(update.skipped, "database")
    if update.changed_anything:
        moved = f", moved {len(update.moved)}" if update.moved else ""
        console.print(
            f"indexed {len(update.embedded)} new or changed, removed {len(update.removed)}, "
            f"unchanged {update.unchanged}, skipped {len(update.skipped)}{moved}"
        )


def new_watcher(service: RetrievalService) -> FolderWatcher:
    """A watcher (not started) that reports each change, and each error, on stderr."""
    from foldervision.retrieval.watch import FolderWatcher

    def report_error(error: Exception) -> None:
        console.print(f"watch: {error} (trying again shortly)", markup=False, soft_wrap=True)

    return FolderWatcher(service, on_update=report_update, on_error=report_error)


def start_watching(
    service: RetrievalService, watcher: FolderWatcher | None = None
) -> FolderWatcher:
    """Keep the service's index current from now on; each change is reported on stderr."""
    watcher = (new_watcher(service) if watcher is None else watcher).start()
    console.print(f"watching {service.database} for changes (Ctrl-C to stop)", markup=False)
    return watcher


def watch_until_stopped(service: RetrievalService) -> None:
    """`index --watch`: keep the index current until Ctrl-C or SIGTERM, then stop cleanly
    (the batch in progress is kept; what is left is indexed on the next start). The watcher
    exists before it starts, so a Ctrl-C the moment "watching" is printed still stops it."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    watcher = new_watcher(service)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        start_watching(service, watcher)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping the watch", markup=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
        watcher.stop()


def report_filter(service: RetrievalService, photo_filter: PhotoFilter) -> None:
    """How many indexed photos a filter keeps, on stderr (nothing without a filter)."""
    if photo_filter.is_empty:
        return
    kept, total = service.count_files(photo_filter), service.count_files()
    console.print(f"{kept} of {total} photos: {photo_filter.describe()}", markup=False)


def report_skipped(skipped: list[SkippedFile], kind: str) -> None:
    for skip in skipped:
        console.print(f"skipped {kind} file: {skip.reason}", markup=False, soft_wrap=True)


def print_results(results: list[QueryResult], as_json: bool) -> None:
    """JSON lines, or `rank<TAB>distance<TAB>path` lines (the query's name goes to stderr).

    Match paths are printed as they are: put them under the database first (`in_folder`)."""
    for result in results:
        if as_json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
            continue
        console.print(f"query: {result.query}", markup=False)
        for match in result.matches:
            print(f"{match.rank}\t{match.distance:.4f}\t{match.path}")


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def pick_query(query_folder: Path) -> Path:
    """The assignment's flow: list the query images, numbered, and ask which one to search."""
    if not stdin_is_terminal():
        raise ValueError(
            "no query image given: pass one (foldervision search QUERY --database FOLDER) or "
            "--queries FOLDER; the numbered picker needs a terminal."
        )
    if not query_folder.is_dir():
        raise ValueError(
            f"{query_folder}: no such folder to pick a query from; pass a query image or "
            "--pick-from FOLDER."
        )
    candidates = list_image_files(query_folder)
    if not candidates:
        raise ValueError(f"{query_folder}: no images to pick from; add some or pass a query.")
    for number, path in enumerate(candidates, start=1):
        console.print(f"{number:3d}  {path.name}", markup=False)
    while True:
        answer = typer.prompt(f"Which query image (1-{len(candidates)})", err=True)
        if answer.strip().isdigit() and 1 <= int(answer) <= len(candidates):
            return candidates[int(answer) - 1]
        console.print(f"Please type a number from 1 to {len(candidates)}.")
