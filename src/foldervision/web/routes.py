"""The searches, the files and the info of the JSON API as routes over the retrieval service,
and what every route shares (web settings, the service, the request's filter, templates); the
page and browsing are in `web.library_routes`.

Each handler gets the service and the web settings (which folders URLs may name, where
thumbnails go, the default k, the upload limit) through FastAPI dependencies; `create_app`
puts both on the app. Handlers only check what a URL may reach, call the service and shape the
answer: the service validates k, searches and says when the index is empty; `web.app` turns
its errors into one-line JSON answers. The searches take the photo filters as query
parameters (`request_filter`), checked by the same `photo_filter` as the command line's. The
search by words goes to a second service, over the CLIP index of the same folder, when
`serve` found or was given one (`text_service_of`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from foldervision.images import ImageLoadError
from foldervision.retrieval.filters import PhotoFilter, photo_filter
from foldervision.retrieval.reranking import Reranking
from foldervision.retrieval.search import QueryResult
from foldervision.retrieval.service import RetrievalService
from foldervision.web.files import resolve_inside, thumbnail
from foldervision.web.middleware import too_large_message

DATABASE_ROOT = "db"
QUERIES_ROOT = "queries"
SEARCH_PATH = "/api/search"
TEXT_SEARCH_PATH = "/api/search-text"
MAX_TEXT_CHARACTERS = 1000
"""Longer text is refused: CLIP reads its first 77 tokens (a few hundred characters) anyway."""
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


@dataclass(frozen=True)
class WebSettings:
    """What the routes need besides the service."""

    roots: Mapping[str, Path]
    """URL root name -> its resolved folder: DATABASE_ROOT always, QUERIES_ROOT when given."""
    thumbs: Path
    default_k: int
    max_upload_bytes: int
    default_filter: PhotoFilter = PhotoFilter()
    """`serve --camera ...`: the filter of every search that names none of its own."""
    reranking: Reranking | None = None
    """`serve --expand N` or `--diffuse`: how every search is re-ranked (None: not)."""
    watching: bool = False
    """`serve --watch`: the index follows the folder while serving."""
    text_hint: str = ""
    """Why words cannot be searched here and how to make them searchable; "" when they can."""

    def image_of(self, root: str, relative: str) -> Path:
        """The real file a URL names, or 404: nothing outside the roots is ever reached."""
        if root not in self.roots:
            raise HTTPException(404, f"{root}: no such root; use one of {', '.join(self.roots)}")
        real = resolve_inside(self.roots[root], relative)
        if real is None:
            raise HTTPException(404, f"{relative}: no such image")
        return real

    def k_or_default(self, k: int | None) -> int:
        return self.default_k if k is None else k


async def service_of(request: Request) -> RetrievalService:
    return request.app.state.service


async def settings_of(request: Request) -> WebSettings:
    return request.app.state.web_settings


async def text_service_of(request: Request) -> RetrievalService | None:
    """The service of the CLIP index that searches by words; None where there is none."""
    return request.app.state.text_service


Service = Annotated[RetrievalService, Depends(service_of)]
Settings = Annotated[WebSettings, Depends(settings_of)]
TextService = Annotated[RetrievalService | None, Depends(text_service_of)]


def request_filter(
    service: Service,
    settings: Settings,
    taken_after: str | None = None,
    taken_before: str | None = None,
    camera: str | None = None,
    under: str | None = None,
) -> PhotoFilter:
    """The filter a request names (`?taken_after=2023-06&camera=iphone&under=2023`), checked
    in one place. A request naming none gets the server's; one naming any gets only its own
    (`?under=` alone: every photo)."""
    given = {
        "taken_after": taken_after,
        "taken_before": taken_before,
        "camera": camera,
        "under": under,
    }
    if all(value is None for value in given.values()):
        return settings.default_filter
    return photo_filter(service.database, **given)


Filter = Annotated[PhotoFilter, Depends(request_filter)]

router = APIRouter()


@router.get("/api/info")
def api_info(service: Service) -> dict[str, Any]:
    info = service.info()
    return {
        "database": info.database,
        "images": info.images,
        "skipped": info.skipped,
        "embedder": info.embedder,
        "updated_at": info.updated_at,
        "index_path": info.index_path,
    }


@router.get(SEARCH_PATH)
def search_by_path(
    service: Service,
    settings: Settings,
    photos: Filter,
    path: str,
    root: str = DATABASE_ROOT,
    k: Annotated[int | None, Query()] = None,
) -> Response:
    """Search with an image of a root: a database file by its stored vector when indexed."""
    settings.image_of(root, path)  # 404 before anything else for what a URL may not reach
    started = time.perf_counter()
    folder = None if root == DATABASE_ROOT else settings.roots[root]
    k = settings.k_or_default(k)
    result = service.search_folder_file(path, k, folder, photos, settings.reranking)
    return search_response(result, started)


@router.post(SEARCH_PATH)
def search_upload(
    service: Service,
    settings: Settings,
    photos: Filter,
    file: Annotated[UploadFile, File()],
    k: Annotated[int | None, Form()] = None,
) -> Response:
    """Search with an uploaded image (the middleware already refused a body over the limit)."""
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, too_large_message(settings.max_upload_bytes))
    started = time.perf_counter()
    k = settings.k_or_default(k)
    result = service.search_bytes(data, upload_name(file.filename), k, photos, settings.reranking)
    return search_response(result, started)


@router.get(TEXT_SEARCH_PATH)
def search_by_words(
    text_service: TextService,
    settings: Settings,
    photos: Filter,
    q: str,
    k: Annotated[int | None, Query()] = None,
) -> Response:
    """Search the CLIP vectors with the text vector of `q` (409 where there is no CLIP index:
    the request is fine, the server cannot answer it; the message says how to make one)."""
    words = " ".join(q.split())
    if not words:
        raise HTTPException(400, "q: type some words to search for, e.g. q=a red flower")
    if len(words) > MAX_TEXT_CHARACTERS:
        raise HTTPException(
            400, f"q: {len(words)} characters; search with at most {MAX_TEXT_CHARACTERS}"
        )
    if text_service is None:
        raise HTTPException(409, settings.text_hint or "this server has no CLIP index")
    started = time.perf_counter()
    k = settings.k_or_default(k)
    [result] = text_service.search_texts([words], k, photos, settings.reranking)
    return search_response(result, started)


@router.get("/images/{root}/{path:path}")
def original(settings: Settings, root: str, path: str) -> FileResponse:
    return FileResponse(settings.image_of(root, path), headers={"Cache-Control": "no-cache"})


@router.get("/thumbs/{root}/{path:path}")
def thumb(settings: Settings, root: str, path: str) -> FileResponse:
    source = settings.image_of(root, path)
    try:
        made = thumbnail(source, settings.thumbs / root / f"{path}.jpg")
    except ImageLoadError as error:
        raise HTTPException(404, str(error).replace(str(source), path)) from None
    return FileResponse(made, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


# --------------------------------------------------------------------------------------------
# Answers.


def search_response(result: QueryResult, started: float) -> JSONResponse:
    """The CLI's --json shape (paths relative to the database); search time in a header."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    return JSONResponse(result.to_dict(), headers={"X-Search-Ms": f"{elapsed_ms:.1f}"})


def empty_index_message(service: RetrievalService, watching: bool = False) -> str:
    then = (
        "they appear here within seconds."
        if watching
        else "restart foldervision serve (it indexes them on start), or serve with --watch."
    )
    return f"The index of {service.database} holds no images yet: add images to the folder; {then}"


def upload_name(filename: str | None) -> str:
    """The uploaded file's base name, as messages call it (never a path of the server's)."""
    name = " ".join((filename or "").replace("\\", "/").split("/")[-1].split())
    return name[:120] or "upload"
