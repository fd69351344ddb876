"""`foldervision models pull NAME`: fetch a registered model's files from its pinned source.

The only code in foldervision that downloads a model, and only when that command is run. Each
file's sha256 is recorded the first time it is downloaded (`<cache>/models/pins.json`, keyed by
repository, revision and path); a later download that differs is refused, whichever mirror
served it. A registered source names a branch (`main`); the first pull asks the hub which
commit it points at and records that too, so every later pull fetches that same immutable
commit, however the branch moves. An interrupted download is resumed with an HTTP Range
request; a file takes its place only once complete and checked, so a model folder is never
half-written. Offline, the command fails in one line that says what to do instead.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from foldervision.atomic import write_json_atomic
from foldervision.cache import sha256_of
from foldervision.clip.model_folder import (
    CONFIG_NAME,
    ClipConfig,
    ModelFolder,
    verify_model_folder,
    write_manifest,
)
from foldervision.clip.models import (
    CLIP_MODELS,
    OPENCLIP_CONFIG,
    PREPROCESS_CONFIG,
    PinnedSource,
    RegisteredModel,
    models_directory,
)
from foldervision.errors import FoldervisionError

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30
PINS_NAME = "pins.json"

Progress = Callable[[str, int, int | None], None]
"""Called with (file name, bytes so far, total bytes or None) as a download goes."""


class PullError(FoldervisionError):
    """A model could not be fetched: offline, a server error, or a changed file refused."""


def pull_model(
    name: str, destination: Path | None = None, progress: Progress | None = None
) -> ModelFolder:
    """Fetch every file of model `name` that is not already here and checked; return the folder."""
    entry = CLIP_MODELS.get(name)
    destination = destination or models_directory() / entry.name
    pins = Pins(models_directory() / PINS_NAME)
    source = at_recorded_commit(entry.source, pins)
    for remote_path, local_name in source.files.items():
        target = destination / local_name
        key = source.pin_key(remote_path)
        if target.is_file() and pins.get(key) == sha256_of(target):
            continue
        digest = download(source.url(remote_path), target, pins.get(key), progress)
        pins.record(key, digest)
    if source.layout == "openclip-split":
        write_config_from_openclip(destination, entry, source)
    write_manifest(destination)
    return verify_model_folder(destination)


def at_recorded_commit(source: PinnedSource, pins: Pins) -> PinnedSource:
    """`source` at the commit its revision named on the first pull (asked once, then recorded)."""
    url = source.commit_url()
    if url is None:
        return source
    key = f"{source.repository}@{source.revision}"
    commit = pins.get(key)
    if commit is None:
        commit = resolve_commit(url)
        pins.record(key, commit)
    return replace(source, revision=commit)


def resolve_commit(url: str) -> str:
    """The 40-hex commit id the hub's revision API answers with."""
    response = _open(url, 0)
    with response:
        try:
            commit = str(json.loads(response.read()).get("sha", ""))
        except (ValueError, AttributeError):
            commit = ""
    if len(commit) != 40 or any(character not in "0123456789abcdef" for character in commit):
        raise PullError(f"{url}: the answer names no commit; try again later.")
    return commit


class Pins:
    """The sha256 of every file ever pulled, recorded on first download (trust on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, str] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def record(self, key: str, digest: str) -> None:
        if self.entries.get(key) != digest:
            self.entries[key] = digest
            write_json_atomic(self.path, self.entries)


def download(url: str, target: Path, expected: str | None, progress: Progress | None = None) -> str:
    """Fetch `url` into `target` (resuming `.NAME.part`); refuse content other than `expected`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    offset = partial.stat().st_size if partial.is_file() else 0
    response = _open(url, offset)
    if response is None:  # the part was complete already: fetch it whole again
        partial.unlink()
        offset, response = 0, _open(url, 0)
    with response:
        start = offset if offset and response.status == 206 else 0  # 200: the server restarts
        total = _total_size(response, start)

        def report(done: int) -> None:
            if progress is not None:
                progress(target.name, done, total)

        with open(partial, "ab" if start else "wb") as file:
            received = _copy(response, file, start, report)
    if total is not None and received < total:
        raise PullError(
            f"{url}: the download stopped after {received} of {total} bytes; run the same "
            "command again to resume it."
        )
    digest = sha256_of(partial)
    if expected is not None and digest != expected:
        partial.unlink()
        raise PullError(
            f"{url}: sha256 {digest[:12]}... differs from {expected[:12]}... recorded when this "
            "file was first downloaded; the published file changed, so it is refused (delete "
            f"its entry from {models_directory() / PINS_NAME} only if you trust the new one)."
        )
    os.replace(partial, target)
    return digest


def _open(url: str, offset: int) -> Any:
    """The response for `url` from byte `offset` on (None when the server has no bytes past
    `offset`); network failures become one line."""
    headers = {"User-Agent": "foldervision"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_SECONDS
        )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return None
        raise PullError(f"{url}: the server answered HTTP {error.code} ({error.reason}).") from None
    except (urllib.error.URLError, OSError) as error:
        host = urllib.parse.urlsplit(url).netloc
        reason = getattr(error, "reason", error)
        raise PullError(
            f"cannot reach {host} ({reason}); `foldervision models pull` needs the internet: run "
            f"it on a connected machine and copy {models_directory()} here, or pass --model "
            "clip:FOLDER with a folder made by scripts/export_clip.py."
        ) from None


def _total_size(response: Any, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None else None


def _copy(response: Any, file: Any, start: int, report: Callable[[int], None]) -> int:
    """Append the body to `file` chunk by chunk; a dropped connection keeps what arrived.
    Returns the file's size (`start` plus what arrived)."""
    copied = start
    try:
        while chunk := response.read(CHUNK_BYTES):
            file.write(chunk)
            copied += len(chunk)
            report(copied)
    except (OSError, http.client.HTTPException):
        pass  # the caller compares what arrived with the announced size
    return copied


def write_config_from_openclip(folder: Path, entry: RegisteredModel, source: PinnedSource) -> None:
    """config.json from OpenCLIP's model config and preprocessing config (as published);
    `source` is the one pulled from (at its commit)."""
    model_config = json.loads((folder / OPENCLIP_CONFIG).read_text(encoding="utf-8"))
    preprocess = json.loads((folder / PREPROCESS_CONFIG).read_text(encoding="utf-8"))
    size = preprocess["size"]
    config = ClipConfig(
        name=entry.name,
        image_size=int(size if isinstance(size, int) else size[0]),
        mean=tuple(preprocess["mean"]),  # type: ignore[arg-type]
        std=tuple(preprocess["std"]),  # type: ignore[arg-type]
        interpolation=preprocess.get("interpolation", "bicubic"),
        resize_mode=preprocess.get("resize_mode", "shortest"),
        context_length=int(model_config.get("text_cfg", {}).get("context_length", 77)),
        embed_dim=int(model_config["embed_dim"]),
        logit_scale=entry.logit_scale,
        source={
            "repository": source.repository,
            "revision": source.revision,
            "branch": entry.source.revision,
        },
    )
    write_json_atomic(folder / CONFIG_NAME, config.to_dict())
