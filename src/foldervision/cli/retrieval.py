"""Image search commands: `index`, `search`, `evaluate-retrieval` and `duplicates`.

stdout carries only results (tab-separated lines, or one JSON object per line with --json);
progress, skipped files and prompts go to stderr, so the commands pipe cleanly.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

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

from foldervision.cli.app import app, console
from foldervision.images import SkippedFile, list_image_files
from foldervision.retrieval.backends import DEFAULT_BACKEND, available_backends
from foldervision.retrieval.duplicates import DuplicateGroup
from foldervision.retrieval.embedder import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    PRECISIONS,
    Embedder,
)
from foldervision.retrieval.index import IndexUpdate
from foldervision.retrieval.milvus_store import TOKEN_ENVIRONMENT_VARIABLE
from foldervision.retrieval.search import DEFAULT_TOP_K, QueryResult
from foldervision.retrieval.service import RetrievalService, check_top_k
from foldervision.retrieval.stores import DEFAULT_STORE

DEFAULT_QUERY_FOLDER = Path("query_images")
DEFAULT_INTERACTIVE_SHEET = Path("search_results.png")

IndexOption = typer.Option(
    None,
    "--index",
    help="Index file. Default: DATABASE/.foldervision/index.sqlite (kept beside the images).",
)
ModelOption = typer.Option(
    DEFAULT_MODEL,
    "--model",
    help="mobilenetv2 (ImageNet features), or a run folder of a trained classifier "
    "(searches with its 'features' layer, adapted to its domain).",
)
ImageSizeOption = typer.Option(
    None, "--image-size", help="Input size in pixels for mobilenetv2 (default 224)."
)
RebuildOption = typer.Option(
    False, "--rebuild", help="Forget the stored vectors (e.g. after changing --model)."
)
BackendOption = typer.Option(
    DEFAULT_BACKEND,
    "--backend",
    help=f"What runs the network: {', '.join(available_backends())} (keras for GPUs).",
)
PrecisionOption = typer.Option(
    DEFAULT_PRECISION,
    "--precision",
    help=f"{' or '.join(PRECISIONS)}; int8 is faster, its vectors differ a little (onnx only).",
)
StoreOption = typer.Option(
    DEFAULT_STORE,
    "--store",
    help="Where the vectors live: faiss (in the index file), milvus (Milvus Lite beside the "
    "index), milvus:PATH.db (Milvus Lite there), milvus:http://HOST:19530[/DBNAME] (a Milvus "
    "server or cluster).",
)
"""Every command that reads or writes vectors takes this (`duplicates`, `serve` too)."""
StoreTokenOption = typer.Option(
    None,
    "--store-token",
    envvar=TOKEN_ENVIRONMENT_VARIABLE,
    help="Milvus server credentials (USER:PASSWORD or an API key); default "
    f"${TOKEN_ENVIRONMENT_VARIABLE}.",
    show_envvar=False,
)
AnnOption = typer.Option(
    None,
    "--ann",
    help="Vector index: auto (exact below 50,000 images, approximate IVF-SQ8 above), exact, "
    "or approximate (even for a small folder, to check its quality). Remembered by the "
    "index; default auto.",
)


@app.command("index")
def index_command(
    database: Path = typer.Argument(..., help="Folder of images to make searchable."),
    index: Path | None = IndexOption,
    model: str = ModelOption,
    image_size: int | None = ImageSizeOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    rebuild: bool = RebuildOption,
    ann: str | None = AnnOption,
    store: str = StoreOption,
    store_token: str | None = StoreTokenOption,
    ray: bool = typer.Option(
        False, "--ray", help="Embed on a local Ray cluster using this machine's cores."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Embed on an existing Ray cluster (e.g. ray://HEAD:10001)."
    ),
) -> None:
    """Build or update the search index of a folder (only new or changed files are embedded)."""
    choice = IndexChoice(
        database,
        index=index,
        model=model,
        image_size=image_size,
        backend=backend,
        precision=precision,
        store=store,
        store_token=store_token,
        ann=ann,
        rebuild=rebuild,
    )
    embedder = None
    if ray or ray_address is not None:
        from foldervision.retrieval.ray_embedding import ray_embedder

        embedder = ray_embedder(model, image_size, address=ray_address)
    with open_updated_service(choice, embedder=embedder) as service:
        info = service.info()
        console.print(f"index: {info.index_path} ({info.images} images)")


@app.command("search")
def search_command(
    query: list[Path] | None = typer.Argument(None, help="Query image file(s)."),
    database: Path = typer.Option(..., "--database", "-d", help="Folder of images to search."),
    queries: Path | None = typer.Option(
        None, "--queries", help="Search with every image in this folder (batch)."
    ),
    top_k: int = typer.Option(DEFAULT_TOP_K, "-k", "--top-k", help="Matches per query."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per query on stdout."),
    sheet: Path | None = typer.Option(None, "--sheet", help="Write a contact-sheet PNG here."),
    pick_from: Path = typer.Option(
        DEFAULT_QUERY_FOLDER,
        "--pick-from",
        help="Folder listed for you to choose from when no query is given on a terminal.",
    ),
    index: Path | None = IndexOption,
    model: str = ModelOption,
    image_size: int | None = ImageSizeOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    rebuild: bool = RebuildOption,
    ann: str | None = AnnOption,
    store: str = StoreOption,
    store_token: str | None = StoreTokenOption,
    no_update: bool = typer.Option(
        False,
        "--no-update",
        help="Search the index as it is, without checking the folder for changes first "
        "(that check stats every file: seconds for 10^6 files).",
    ),
) -> None:
    """Find the images of DATABASE nearest to each query (the index is updated first)."""
    check_top_k(top_k)
    query_paths = list(query or [])
    if queries is not None:
        query_paths += list_image_files(queries)
    if not query_paths:
        query_paths = [pick_query(pick_from)]
        sheet = sheet or DEFAULT_INTERACTIVE_SHEET
    choice = IndexChoice(
        database,
        index=index,
        model=model,
        image_size=image_size,
        backend=backend,
        precision=precision,
        store=store,
        store_token=store_token,
        ann=ann,
        rebuild=rebuild,
    )
    with open_updated_service(choice, update=not no_update) as service:
        results, skipped = service.search_files(query_paths, top_k)
        results = [result.in_folder(service.database) for result in results]
    report_skipped(skipped, "query")
    if not results:
        raise ValueError(f"{query_paths[0]}: no query image could be read; pass a readable image.")
    print_results(results, as_json)
    if sheet is not None:
        from foldervision.retrieval.sheet import write_contact_sheet

        console.print(f"contact sheet: {write_contact_sheet(results, sheet)}")


@app.command("evaluate-retrieval")
def evaluate_retrieval_command(
    labelled_folder: Path = typer.Argument(..., help="Folder with one subfolder per class."),
    top_k: int = typer.Option(DEFAULT_TOP_K, "-k", "--top-k", help="k of precision@k."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    index: Path | None = IndexOption,
    model: str = ModelOption,
    image_size: int | None = ImageSizeOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    rebuild: bool = RebuildOption,
    ann: str | None = AnnOption,
    store: str = StoreOption,
    store_token: str | None = StoreTokenOption,
) -> None:
    """Leave-one-out precision@k and mAP: each image queries all the others of the folder."""
    from foldervision.retrieval.evaluate import evaluate_labelled_folder

    choice = IndexChoice(
        labelled_folder,
        index=index,
        model=model,
        image_size=image_size,
        backend=backend,
        precision=precision,
        store=store,
        store_token=store_token,
        ann=ann,
        rebuild=rebuild,
    )
    with open_updated_service(choice) as service:
        report = evaluate_labelled_folder(service.index, top_k)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    print(
        f"precision@{top_k}\t{report['precision_at_k']:.4f}\n"
        f"mAP\t{report['mean_average_precision']:.4f}\n"
        f"queries\t{report['queries']}"
    )


@app.command("duplicates")
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
    index: Path | None = IndexOption,
    model: str = ModelOption,
    image_size: int | None = ImageSizeOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    rebuild: bool = RebuildOption,
    ann: str | None = AnnOption,
    store: str = StoreOption,
    store_token: str | None = StoreTokenOption,
) -> None:
    """List groups of near-identical images (resized, re-saved, cropped, captioned ...)."""
    choice = IndexChoice(
        database,
        index=index,
        model=model,
        image_size=image_size,
        backend=backend,
        precision=precision,
        store=store,
        store_token=store_token,
        ann=ann,
        rebuild=rebuild,
    )
    if dry_run and move_to is None:
        raise ValueError("--dry-run shows what --move-to FOLDER would move; pass --move-to too.")
    with open_updated_service(choice) as service:
        found = service.find_duplicates(threshold, keep_under)
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
    console.print(f"{len(groups)} groups of near-duplicates, {files} files")
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


@dataclass(frozen=True)
class IndexChoice:
    """What every command that reads or writes vectors is told: which index, made how.

    Everything after the folder is named at the call: ten options in a row are too easy to
    pass in the wrong order."""

    database: Path
    _: KW_ONLY
    index: Path | None = None
    model: str = DEFAULT_MODEL
    image_size: int | None = None
    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION
    store: str = DEFAULT_STORE
    store_token: str | None = None
    ann: str | None = None
    rebuild: bool = False

    def open(self, embedder: Embedder | None = None) -> RetrievalService:
        if self.store_token:  # the Milvus store reads it from the environment, never logged
            os.environ[TOKEN_ENVIRONMENT_VARIABLE] = self.store_token
        return RetrievalService.open(
            self.database,
            self.index,
            model=self.model,
            image_size=self.image_size,
            backend=self.backend,
            precision=self.precision,
            store=self.store,
            ann=self.ann,
            rebuild=self.rebuild,
            embedder=embedder,
        )


def open_updated_service(
    choice: IndexChoice, update: bool = True, embedder: Embedder | None = None
) -> RetrievalService:
    """Open the folder's index and bring it up to date, showing progress on stderr.

    `embedder` (e.g. Ray workers) embeds the files; this process still writes the index.
    """
    service = choice.open(embedder)
    if not update:
        return service
    try:
        with _progress_bar() as progress:
            task = progress.add_task("embedding", total=None)

            def show(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            update = service.update(progress=show)
    except BaseException:
        service.close()
        raise
    report_update(update)
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
    )


def report_update(update: IndexUpdate) -> None:
    report_skipped(update.skipped, "database")
    if update.changed_anything:
        console.print(
            f"indexed {len(update.embedded)} new or changed, removed {len(update.removed)}, "
            f"unchanged {update.unchanged}, skipped {len(update.skipped)}"
        )


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
