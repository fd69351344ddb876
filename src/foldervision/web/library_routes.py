"""The page as a library: the page itself, a page of photos at a time, and the header's facts.

    GET /                                     the page
    GET /api/files?offset=0&limit=60&sort=taken
                                              a page of the photos the filters keep, newest
                                              first (or sort=path), with the total
    GET /api/library                          the header and filter menus: photos, capture
                                              dates, last update, model, cameras, folders

`/api/files` takes the same filters as the searches (`routes.request_filter`). The page polls
`/api/info` and, when its `updated_at` moves (`serve --watch`), fetches `/api/library` and the
first page again: new photos appear without a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from foldervision.images import list_image_files
from foldervision.retrieval.filters import PhotoFilter
from foldervision.retrieval.library_info import format_time
from foldervision.retrieval.photos import SORTS, PhotoEntry
from foldervision.retrieval.service import MAX_TOP_K, LibraryOverview
from foldervision.retrieval.spec import EmbedderSpec
from foldervision.web.routes import (
    QUERIES_ROOT,
    TEMPLATES,
    Filter,
    Service,
    Settings,
    WebSettings,
    empty_index_message,
)

PAGE_SIZE = 60
"""Photos per page of the grid: a few screens, so scrolling rarely waits."""
MAX_PAGE_SIZE = 500

library_router = APIRouter()


@library_router.get("/")
def page(request: Request, service: Service, settings: Settings) -> Response:
    overview = service.overview()
    context = {
        "header": header_facts(overview),
        "details": technical_details(overview, service.info().embedder, str(service.index_path)),
        "database": str(service.database),
        "queries": query_folder_images(settings),
        "filter": page_filter(settings.default_filter),
        "k": settings.default_k,
        "max_k": MAX_TOP_K,
        "max_upload_mb": settings.max_upload_bytes // (1024 * 1024),
        "page_size": PAGE_SIZE,
        "watching": settings.watching,
        "text_search": request.app.state.text_service is not None,
        "text_hint": settings.text_hint,
        "updated_at": "" if overview.updated_at is None else repr(overview.updated_at),
        "empty_message": (
            empty_index_message(service, settings.watching) if overview.images == 0 else None
        ),
    }
    return TEMPLATES.TemplateResponse(request, "index.html", context)


@library_router.get("/api/files")
def api_files(
    service: Service,
    photos: Filter,
    offset: int = 0,
    limit: int = PAGE_SIZE,
    sort: str = "taken",
) -> dict[str, Any]:
    """A page of the photos the filters keep, and how many they keep in all."""
    if offset < 0:
        raise HTTPException(400, f"offset must be 0 or more, got {offset}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise HTTPException(400, f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    if sort not in SORTS:
        raise HTTPException(400, f"sort {sort}: use one of {', '.join(SORTS)}")
    entries = service.list_files(photos, sort, offset, limit)
    return {
        "total": service.count_files(photos),
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "files": [file_answer(entry) for entry in entries],
    }


@library_router.get("/api/library")
def api_library(service: Service) -> dict[str, Any]:
    overview = service.overview()
    return {
        **header_facts(overview),
        "updated_at": overview.updated_at,
        "cameras": [{"name": name, "photos": count} for name, count in overview.cameras],
        "folders": [{"path": path, "photos": count} for path, count in overview.folders],
    }


# --------------------------------------------------------------------------------------------
# Answers.


def file_answer(entry: PhotoEntry) -> dict[str, Any]:
    """A listed photo: its metadata, and its folder for the tile's caption."""
    folder = entry.path.rpartition("/")[0]
    return {**entry.to_dict(), "folder": folder}


def header_facts(overview: LibraryOverview) -> dict[str, Any]:
    """The header in words: how many photos, taken when, updated when, by which model."""
    return {
        "images": overview.images,
        "images_text": f"{overview.images:,} images",
        "dates_text": dates_in_words(day(overview.taken_first), day(overview.taken_last)),
        "updated_text": format_time(overview.updated_at),
        "model_text": model_in_words(overview.spec),
    }


def dates_in_words(first: str | None, last: str | None) -> str:
    if first is None or last is None:
        return "no capture dates yet"
    return f"taken {first}" if first == last else f"taken {first} to {last}"


def technical_details(overview: LibraryOverview, described: str, index_path: str) -> list:
    """What the "details" toggle lists: the exact embedder and the index."""
    spec = overview.spec
    return [
        ("model", described),
        ("weights", spec.weights),
        ("layer", spec.layer),
        ("pooling", spec.pooling),
        (
            "input",
            f"{' + '.join(f'{side} px' for side in spec.scale_sides())} {spec.color_mode}, "
            f"{spec.precision}",
        ),
        ("decoding", spec.decoding),
        ("index", index_path),
        ("skipped files", str(overview.skipped)),
    ]


def model_in_words(spec: EmbedderSpec) -> str:
    from foldervision.models.pretrained import pretrained_backbones

    backbones = pretrained_backbones(spec.model)
    if len(backbones) == 1:
        return backbones[0].description
    if backbones:
        return " + ".join(backbone.title for backbone in backbones) + " (ImageNet, side by side)"
    if spec.model.startswith("clip:"):
        return f"CLIP {spec.model.removeprefix('clip:')}"
    return f"{Path(spec.model).name} (trained here)"


def day(taken: str | None) -> str | None:
    return taken[:10] if taken else None


def page_filter(photo_filter: PhotoFilter) -> dict[str, str]:
    """The server's filter (`serve --camera ...`) as the page's controls start: dates as days,
    the last day shown inclusive (the filter's `taken_before` is exclusive)."""
    from datetime import date, timedelta

    before = photo_filter.taken_before or ""
    last_day = before[:10]
    if before.endswith("T00:00:00"):  # before midnight starting a day: the day before it
        last_day = (date.fromisoformat(last_day) - timedelta(days=1)).isoformat()
    return {
        "taken_from": day(photo_filter.taken_after) or "",
        "taken_to": last_day,
        "camera": photo_filter.camera or "",
        "under": photo_filter.under or "",
    }


def query_folder_images(settings: WebSettings) -> list[str]:
    """The query folder's images (`--queries`), offered above the library; none without one."""
    if QUERIES_ROOT not in settings.roots:
        return []
    folder = settings.roots[QUERIES_ROOT]
    return [path.relative_to(folder).as_posix() for path in list_image_files(folder)]
