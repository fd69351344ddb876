"""`foldervision serve`: the search as a web page, warm across requests.

The command only parses, opens and updates the index (progress on stderr), warms the network
and hands everything to `foldervision.web`.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path

import typer

from foldervision.cli.app import app, console
from foldervision.cli.options import (
    CentreOption,
    DiffuseOption,
    ExpandOption,
    WatchOption,
    takes_index_settings,
    takes_photo_filter,
)
from foldervision.cli.retrieval import (
    chosen_reranking,
    open_updated_service,
    report_filter,
    start_watching,
)
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.search import DEFAULT_TOP_K
from foldervision.retrieval.service import RetrievalService, check_top_k
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.text_index import text_index_settings


@app.command("serve")
@takes_photo_filter
@takes_index_settings
def serve_command(
    database: Path = typer.Argument(..., help="Folder of images to search."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on. 0.0.0.0 or :: opens it to the network."
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    top_k: int = typer.Option(DEFAULT_TOP_K, "-k", "--top-k", help="Matches shown per query."),
    queries: Path | None = typer.Option(
        None,
        "--queries",
        help="Folder of query images offered on the page. Default: query_images/ beside "
        "DATABASE when it exists.",
    ),
    watch: WatchOption = False,
    expand: ExpandOption = 0,
    diffuse: DiffuseOption = False,
    centre: CentreOption = False,
    text_model: str | None = typer.Option(
        None,
        "--text-model",
        help="CLIP model whose vectors of DATABASE the page searches by words (clip-vit-b32, "
        "or clip:FOLDER); its index is made or updated first. Default: a CLIP index found "
        "beside the index, when its model was pulled.",
    ),
    *,
    settings: IndexSettings,
    photo_filter: PhotoFilter,
) -> None:
    """Serve a page to browse and search DATABASE, and its JSON API (the index is updated
    first; with --watch, kept current while serving).

    Filters given here are the page's starting filters, and apply to every API request that
    names no filter of its own. --expand, --diffuse or --centre re-ranks every search the page
    and the API make, as `search` does. Where the folder has a CLIP index (or --text-model),
    the page also searches by words."""
    from foldervision.clip.models import is_clip_model
    from foldervision.web.app import create_app, default_query_folder
    from foldervision.web.server import listen, listens_everywhere, run_server, url_of

    check_top_k(top_k)
    reranking = chosen_reranking(expand, diffuse, centre)
    if text_model is not None and not is_clip_model(text_model):
        raise ValueError(
            f"--text-model {text_model}: not a CLIP model; pass clip-vit-b32 (after "
            "`foldervision models pull clip-vit-b32`) or clip:FOLDER."
        )
    if queries is not None and not queries.is_dir():
        raise ValueError(f"{queries}: not a folder; pass a folder of query images to --queries.")
    if listens_everywhere(host):
        console.print(
            f"warning: listening on all interfaces ({host or '*'}): anyone who can reach this "
            "machine can browse DATABASE's images; the page has no login.",
            markup=False,
            soft_wrap=True,
        )
    sock = listen(host, port)
    try:
        with open_updated_service(settings) as service, ExitStack() as closing:
            report_filter(service, photo_filter)
            service.warm_up()
            text_service, text_hint = open_text_service(settings, service, text_model)
            if text_service is not None:
                closing.enter_context(text_service)
            web_app = create_app(
                service,
                queries or default_query_folder(database),
                top_k,
                photo_filter=photo_filter,
                reranking=reranking,
                watching=watch,
                text_service=text_service,
                text_hint=text_hint,
            )
            watchers = [start_watching(s) for s in (service, text_service) if s] if watch else []
            console.print(
                f"serving {database} at {url_of(sock)} (Ctrl-C to stop)",
                markup=False,
                soft_wrap=True,
            )
            try:
                run_server(web_app, sock)
            finally:
                for watcher in watchers:
                    watcher.stop()
    finally:
        sock.close()


def open_text_service(
    settings: IndexSettings, service: RetrievalService, text_model: str | None
) -> tuple[RetrievalService | None, str]:
    """The service that searches DATABASE by words, updated (None where `service` is a CLIP
    one and does it itself), or None and one line saying how to make one."""
    if hasattr(service.embedder, "embed_texts"):
        return None, ""
    if text_model is not None:
        chosen = dataclasses.replace(
            settings, model=text_model, index_path=None, decoding=None, scales=None
        )
        return open_updated_service(chosen), ""
    found, hint = text_index_settings(settings, service.index_path)
    if found is None:
        return None, hint  # the page says it beside its disabled text box
    return open_updated_service(found), ""
