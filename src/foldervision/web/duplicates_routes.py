"""The duplicates review page and its JSON API, over the same service as the search page.

    GET  /duplicates                the page: groups, largest first, keeper marked
    GET  /api/duplicates            {"groups": [...], "destination": a suggested folder}
    POST /api/duplicates/move       {"destination": FOLDER, "groups": [{"files", "keep"}]}
    POST /api/duplicates/undo       {"journal": PATH}

A move names groups by their files and the keeper the person chose; only groups the last
GET /api/duplicates answered, exactly as answered, may be moved (a stale page or a made-up
path is refused), and only journals this server wrote may be undone. Moves go through
`RetrievalService.move_duplicates`, the journal `foldervision undo` also reads.
"""

from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from foldervision.retrieval.duplicates import DuplicateGroup
from foldervision.web.routes import TEMPLATES, Service

router = APIRouter()


class GroupChoice(BaseModel):
    files: list[str]
    keep: str


class MoveRequest(BaseModel):
    destination: str
    groups: list[GroupChoice]


class UndoRequest(BaseModel):
    journal: str


class ReviewState:
    """What this server showed and wrote: the groups last listed, the journals it made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.groups: dict[frozenset[str], DuplicateGroup] = {}
        self.journals: set[str] = set()


def review_state(request: Request) -> ReviewState:
    app_state = request.app.state
    if not hasattr(app_state, "duplicates_review"):
        app_state.duplicates_review = ReviewState()
    return app_state.duplicates_review


@router.get("/duplicates")
def duplicates_page(request: Request, service: Service) -> Response:
    return TEMPLATES.TemplateResponse(request, "duplicates.html", {"info": service.info()})


@router.get("/api/duplicates")
def list_duplicates(request: Request, service: Service) -> dict[str, Any]:
    groups = sorted(service.find_duplicates(), key=lambda group: -len(group.files))
    state = review_state(request)
    with state.lock:
        state.groups = {frozenset(group.files): group for group in groups}
    return {
        "groups": [group_answer(service, group) for group in groups],
        "destination": str(suggested_destination(service.database)),
    }


@router.post("/api/duplicates/move")
def move_duplicates(request: Request, service: Service, choice: MoveRequest) -> dict[str, Any]:
    state = review_state(request)
    with state.lock:
        groups = [chosen_group(state, group) for group in choice.groups]
        if not Path(choice.destination).is_absolute():
            raise HTTPException(400, f"{choice.destination}: give the folder's full path")
        moves, journal = service.move_duplicates(groups, choice.destination)
        state.journals.add(str(journal))
        state.groups = {}
    return {
        "moved": [
            {"from": relative(service, move.source), "to": str(move.target)} for move in moves
        ],
        "journal": str(journal),
    }


@router.post("/api/duplicates/undo")
def undo_moves(request: Request, service: Service, undo: UndoRequest) -> dict[str, Any]:
    state = review_state(request)
    with state.lock:
        if undo.journal not in state.journals:
            raise HTTPException(404, f"{undo.journal}: not a journal this page wrote")
        moved_back = service.undo_moves(undo.journal)
        state.journals.discard(undo.journal)
        state.groups = {}
    return {"moved_back": moved_back}


def chosen_group(state: ReviewState, choice: GroupChoice) -> DuplicateGroup:
    """The listed group with these files, with the person's keeper; 409 if none was listed."""
    group = state.groups.get(frozenset(choice.files))
    if group is None or len(choice.files) != len(group.files):
        raise HTTPException(409, "the groups changed since the page listed them; reload it")
    if choice.keep not in group.files:
        raise HTTPException(400, f"{choice.keep}: not a file of its group")
    return DuplicateGroup(group.files, group.distances, choice.keep, "chosen on the page")


def group_answer(service: Service, group: DuplicateGroup) -> dict[str, Any]:
    facts = service.file_facts(group.files)
    return {
        "keep": group.keep,
        "why": group.why,
        "files": [
            {**fact.to_dict(), "folder": str(PurePosixPath(fact.path).parent), "distance": distance}
            for fact, distance in zip(facts, group.distances)
        ],
    }


def suggested_destination(database: Path) -> Path:
    """A folder beside the database: DATABASE-duplicates."""
    resolved = database.resolve()
    return resolved.parent / f"{resolved.name}-duplicates"


def relative(service: Service, path: Path) -> str:
    return Path(path).relative_to(service.database).as_posix()
