"""The web page and its JSON API, over one warm RetrievalService.

    service = RetrievalService.open("images_database"); service.update(); warm_up(service)
    app = create_app(service, query_folder=Path("query_images"))

URLs name a root and a path relative to it: `db` (the database folder) or `queries` (the
query folder, whose images are not indexed and are embedded on request):

    GET  /                                  the page
    GET  /api/info                          index size, model, last update
    GET  /api/search?path=REL&root=db&k=4   search with an image of a root
    POST /api/search  (multipart: file, k)  search with an uploaded image
    GET  /images/{root}/REL                 the original file
    GET  /thumbs/{root}/REL                 a cached thumbnail (under the index folder)

Search answers have the shape of `foldervision search --json`, with result paths relative to
the database folder; every error is {"error": "one line"}.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foldervision.errors import FoldervisionError
from foldervision.images import ImageLoadError, list_image_files
from foldervision.retrieval.search import DEFAULT_TOP_K, QueryResult
from foldervision.retrieval.service import RetrievalService
from foldervision.web.files import resolve_inside, thumbnail, thumbnail_folder

HERE = Path(__file__).parent
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Uploads above this are refused with 413 before they are read whole."""
MAX_K = 100
QUERY_STRIP_SIZE = 12
"""How many database images the strip offers when there is no query folder."""

SECURITY_HEADERS = {
    # Scripts and styles come only from /static: an image name can never become markup.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def default_query_folder(database: Path) -> Path | None:
    """`query_images/` beside the database folder (the assignment's layout), when it exists."""
    folder = Path(database).resolve().parent / "query_images"
    return folder if folder.is_dir() else None


def warm_up(service: RetrievalService) -> None:
    """Build and trace the network and load the store now, so the first visitor does not wait."""
    spec = service.embedder.spec
    channels = 1 if spec.color_mode == "grayscale" else 3
    blank = np.zeros((1, spec.image_size, spec.image_size, channels), np.uint8)
    if len(service.index):
        service.search_vectors(service.embedder.embed_pixels(blank), 1)
    else:
        service.embedder.embed_pixels(blank)


def create_app(
    service: RetrievalService,
    query_folder: Path | None = None,
    default_k: int = DEFAULT_TOP_K,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    thumbs: Path | None = None,
) -> FastAPI:
    """The app over an open (and updated) service; it never writes into the database folder."""
    roots = {"db": service.database.resolve()}
    if query_folder is not None:
        roots["queries"] = Path(query_folder).resolve()
    thumbs = thumbs or thumbnail_folder(Path(service.index.index_path).resolve())
    templates = Jinja2Templates(directory=HERE / "templates")

    app = FastAPI(title="foldervision", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(LimitUploadSize, max_bytes=max_upload_bytes, path="/api/search")
    app.add_middleware(ResponseHeaders)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return error_response(400, f"{field}: {first.get('msg', 'invalid')}")

    def image_of(root: str, relative: str) -> Path:
        real = resolve_inside(roots[root], relative) if root in roots else None
        if real is None:
            raise HTTPException(404, f"{relative}: no such image")
        return real

    def check_k(k: int) -> None:
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must be between 1 and {MAX_K}, got {k}")
        if len(service.index) == 0:
            raise HTTPException(409, empty_index_message(service))

    @app.get("/")
    def page(request: Request) -> Response:
        info = service.info()
        context = {
            "info": info,
            "updated": format_time(info.updated_at),
            "strip": query_strip(service, roots),
            "k": default_k,
            "max_k": MAX_K,
            "max_upload_mb": max_upload_bytes // (1024 * 1024),
            "empty_message": empty_index_message(service) if info.images == 0 else None,
        }
        return templates.TemplateResponse(request, "index.html", context)

    @app.get("/api/info")
    def api_info() -> dict[str, Any]:
        info = service.info()
        return {
            "database": info.database,
            "images": info.images,
            "skipped": info.skipped,
            "embedder": info.embedder,
            "updated_at": info.updated_at,
            "index_path": info.index_path,
        }

    @app.get("/api/search")
    def search_path(
        path: str, root: str = "db", k: Annotated[int, Query()] = default_k
    ) -> Response:
        real = image_of(root, path)
        check_k(k)
        started = time.perf_counter()
        result = None
        if root == "db":
            result = service.search_indexed(path, k)  # stored vector: no decoding
        if result is None:  # a query-folder image, or a database file not indexed yet
            results, skipped = service.search_files([real], k)
            if not results:
                reason = skipped[0].reason if skipped else "cannot be read"
                raise HTTPException(400, reason.replace(str(real), path))
            result = results[0]
        return search_response(service, path, result, started)

    @app.post("/api/search")
    def search_upload(
        file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = default_k
    ) -> Response:
        check_k(k)
        name = upload_name(file.filename)
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, too_large_message(max_upload_bytes))
        started = time.perf_counter()
        try:
            result = service.search_bytes(data, name, k)
        except ImageLoadError as error:
            raise HTTPException(400, str(error)) from None
        return search_response(service, name, result, started)

    @app.get("/images/{root}/{path:path}")
    def original(root: str, path: str) -> FileResponse:
        return FileResponse(image_of(root, path), headers={"Cache-Control": "no-cache"})

    @app.get("/thumbs/{root}/{path:path}")
    def thumb(root: str, path: str) -> FileResponse:
        source = image_of(root, path)
        try:
            made = thumbnail(source, thumbs / root / f"{path}.jpg")
        except ImageLoadError as error:
            raise HTTPException(404, str(error).replace(str(source), path)) from None
        return FileResponse(made, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.exception_handler(FoldervisionError)
    async def library_error(request: Request, error: FoldervisionError) -> JSONResponse:
        return error_response(400, str(error))

    return app


# --------------------------------------------------------------------------------------------
# Answers.


def search_response(
    service: RetrievalService, query: str, result: QueryResult, started: float
) -> JSONResponse:
    """The CLI's --json shape, paths relative to the database; search time in the headers."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    body = {
        "query": query,
        "results": [
            {
                "rank": match.rank,
                "path": Path(match.path).relative_to(service.database).as_posix(),
                "distance": match.distance,
            }
            for match in result.matches
        ],
    }
    headers = {"X-Search-Ms": f"{elapsed_ms:.1f}"}
    return JSONResponse(body, headers=headers)


def error_response(status: int, message: str) -> JSONResponse:
    line = " ".join(message.split())  # always one line, whatever the cause
    return JSONResponse({"error": line}, status_code=status)


def too_large_message(max_bytes: int) -> str:
    return f"upload is larger than {max_bytes // (1024 * 1024)} MB; send a smaller image"


def empty_index_message(service: RetrievalService) -> str:
    return (
        f"The index of {service.database} holds no images yet: add images to the folder, then "
        "restart foldervision serve (it indexes them on start)."
    )


def upload_name(filename: str | None) -> str:
    """The uploaded file's base name, as messages call it (never a path of the server's)."""
    name = " ".join((filename or "").replace("\\", "/").split("/")[-1].split())
    return name[:120] or "upload"


def format_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def query_strip(service: RetrievalService, roots: dict[str, Path]) -> list[dict[str, str]]:
    """The query folder's images, else an even sample of the database's indexed images."""
    if "queries" in roots:
        files = list_image_files(roots["queries"])
        return [
            {"root": "queries", "path": path.relative_to(roots["queries"]).as_posix()}
            for path in files
        ]
    paths = [path for _, path in service.index.catalogue.files()]
    step = max(1, len(paths) // QUERY_STRIP_SIZE)
    return [{"root": "db", "path": path} for path in paths[::step][:QUERY_STRIP_SIZE]]


# --------------------------------------------------------------------------------------------
# ASGI middleware: they see the raw request, before FastAPI parses (and buffers) a form.


class LimitUploadSize:
    """413 for a body over `max_bytes` on `path`: by Content-Length, else by counting.

    The declared length is checked before a byte is read; a body without one (chunked) or one
    that lies is counted as it streams in and cut off at the limit, so it is never held whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    # Answer now; the app sees a client that went away and stops reading.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send) -> None:
        response = error_response(413, too_large_message(self.max_bytes))
        response.headers["Connection"] = "close"
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class ResponseHeaders:
    """Security headers on every answer, and `Server-Timing: app;dur=MS` (network excluded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [
                    (name.lower().encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.lower().encode() not in present
                ]
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
