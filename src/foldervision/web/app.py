"""The web page and its JSON API, over one warm RetrievalService.

    service = RetrievalService.open(IndexSettings("images_database"))
    service.update(); service.warm_up()
    app = create_app(service, query_folder=Path("query_images"))

URLs name a root and a path relative to it: `db` (the database folder) or `queries` (the
query folder, whose images are not indexed and are embedded on request):

    GET  /                                  the page: browse the library, search it
    GET  /api/files?offset=&limit=&sort=    a page of the photos, newest first (+ filters)
    GET  /api/library                       the header's facts, the cameras and folders
    GET  /api/info                          index size, model, last update
    GET  /api/search?path=REL&root=db&k=4   search with an image of a root
    POST /api/search  (multipart: file, k)  search with an uploaded image
    GET  /api/search-text?q=WORDS&k=4       search by words in the folder's CLIP index (409
                                            and how to make one, where there is none)
         all three, and /api/files, take the photo filters as query parameters: taken_after,
         taken_before (dates, as --taken-after), camera, under (a folder of the database);
         none given: the server's own (`serve --camera ...`)
    GET  /images/{root}/REL                 the original file
    GET  /thumbs/{root}/REL                 a cached thumbnail (under the index folder)
    GET  /duplicates                        the duplicates review page (web.duplicates_routes)

Search answers have the shape of `foldervision search --json`, with result paths relative to
the database folder; every error is {"error": "one line"}. The routes are in `web.routes`
and `web.library_routes`, the middleware in `web.middleware`; this module assembles them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from foldervision.errors import EmptyIndexError, FoldervisionError
from foldervision.images import ImageLoadError
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.reranking import Reranking
from foldervision.retrieval.search import DEFAULT_TOP_K
from foldervision.retrieval.service import RetrievalService
from foldervision.web.duplicates_routes import router as duplicates_router
from foldervision.web.files import thumbnail_folder
from foldervision.web.library_routes import library_router
from foldervision.web.middleware import LimitUploadSize, ResponseHeaders, error_response
from foldervision.web.routes import (
    DATABASE_ROOT,
    QUERIES_ROOT,
    SEARCH_PATH,
    WebSettings,
    empty_index_message,
    router,
    service_of,
)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Uploads above this are refused with 413 before they are read whole."""


def default_query_folder(database: Path) -> Path | None:
    """`query_images/` beside the database folder (the assignment's layout), when it exists."""
    folder = Path(database).resolve().parent / "query_images"
    return folder if folder.is_dir() else None


def create_app(
    service: RetrievalService,
    query_folder: Path | None = None,
    default_k: int = DEFAULT_TOP_K,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    thumbs: Path | None = None,
    photo_filter: PhotoFilter | None = None,
    reranking: Reranking | None = None,
    watching: bool = False,
    text_service: RetrievalService | None = None,
    text_hint: str = "",
) -> FastAPI:
    """The app over an open (and updated) service; it never writes into the database folder.

    `reranking`: `serve --expand/--diffuse/--centre`, applied to every search.
    `watching`: a `FolderWatcher` keeps the index current (the page then says so).
    `text_service`: an open service over a CLIP index of the same folder, which searches by
    words (the page then shows its text box); without one, `text_hint` says how to make one
    (`retrieval.text_index.text_index_settings`). A CLIP `service` searches by words itself."""
    if text_service is None and hasattr(service.embedder, "embed_texts"):
        text_service = service
    roots = {DATABASE_ROOT: service.database.resolve()}
    if query_folder is not None:
        roots[QUERIES_ROOT] = Path(query_folder).resolve()
    app = FastAPI(title="foldervision", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.text_service = text_service
    app.state.web_settings = WebSettings(
        roots=roots,
        thumbs=thumbs or thumbnail_folder(service.index_path.resolve()),
        default_k=default_k,
        max_upload_bytes=max_upload_bytes,
        default_filter=photo_filter or PhotoFilter(),
        reranking=reranking,
        watching=watching,
        text_hint="" if text_service is not None else text_hint,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(LimitUploadSize, max_bytes=max_upload_bytes, path=SEARCH_PATH)
    app.add_middleware(ResponseHeaders)
    for error_type, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(error_type, handler)  # type: ignore[arg-type]
    app.include_router(router)
    app.include_router(library_router)
    app.include_router(duplicates_router)
    return app


# --------------------------------------------------------------------------------------------
# Errors: each becomes {"error": "one line"} with the status that says whose fault it is.


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return error_response(error.status_code, str(error.detail))


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """A parameter FastAPI could not parse (`k=many`, no file): its name, then why."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    return error_response(400, f"{field}: {first.get('msg', 'invalid')}")


async def empty_index_error(request: Request, error: EmptyIndexError) -> JSONResponse:
    """409: the request is fine, the index is not ready; say how to fill it from here."""
    watching = request.app.state.web_settings.watching
    return error_response(409, empty_index_message(await service_of(request), watching))


async def bad_input_error(request: Request, error: ValueError) -> JSONResponse:
    """An image that cannot be decoded, a k out of range: the service's own line."""
    return error_response(400, str(error))


ERROR_HANDLERS = {
    HTTPException: http_error,
    RequestValidationError: validation_error,
    EmptyIndexError: empty_index_error,
    FoldervisionError: bad_input_error,
    ImageLoadError: bad_input_error,
}
