"""`models pull` against a real HTTP server on 127.0.0.1, laid out like the pinned source
(Immich's OpenCLIP export: visual/, textual/, OpenCLIP's configs), serving the tiny model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from clip_fixtures import FIXTURES, TINY_MODEL

from foldervision.clip.embedder import load_clip_embedder
from foldervision.clip.models import (
    CLIP_MODELS,
    COMMIT_TEMPLATE_VARIABLE,
    URL_TEMPLATE_VARIABLE,
)
from foldervision.clip.pull import PullError, pull_model

SOURCE = CLIP_MODELS.get("clip-vit-b32").source
FIRST_COMMIT = "1" * 40
LATER_COMMIT = "2" * 40


class PinnedSourceServer(ThreadingHTTPServer):
    """Files by URL path; honours Range; can cut one response short; logs each request."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files = files
        self.cut_after: dict[str, int] = {}
        """Path -> bytes to send before dropping the connection (once)."""
        self.requests: list[tuple[str, str | None]] = []
        self.branches = {SOURCE.revision: FIRST_COMMIT}
        """Branch -> the commit it points at now, as the hub's revision API answers."""

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/{{repository}}/resolve/{{revision}}/{{path}}"

    @property
    def commit_template(self) -> str:
        return (
            f"http://127.0.0.1:{self.server_port}/api/models/{{repository}}/revision/{{revision}}"
        )


class RangeHandler(BaseHTTPRequestHandler):
    server: PinnedSourceServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Range")))
        api_prefix = f"/api/models/{SOURCE.repository}/revision/"
        if self.path.startswith(api_prefix):
            commit = self.server.branches.get(self.path.removeprefix(api_prefix))
            body = None if commit is None else json.dumps({"sha": commit}).encode()
        else:
            body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.server.cut_after.pop(self.path, None)
        self.wfile.write(body[start:] if cut is None else body[start : start + cut])
        if cut is not None:
            self.close_connection = True

    def log_message(self, *arguments: object) -> None:
        pass


def immich_layout(tiny: Path, commit: str = FIRST_COMMIT) -> dict[str, bytes]:
    """The tiny model's towers and configs at the remote paths of the pinned source."""
    config = json.loads((tiny / "config.json").read_text())
    openclip_config = {
        "embed_dim": config["embed_dim"],
        "vision_cfg": {"image_size": config["image_size"], "layers": 2, "width": 32},
        "text_cfg": {"context_length": config["context_length"], "vocab_size": 1014},
    }
    preprocess = {
        "size": [config["image_size"], config["image_size"]],
        "mode": "RGB",
        "mean": config["mean"],
        "std": config["std"],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    remote = {
        "config.json": json.dumps(openclip_config).encode(),
        "visual/preprocess_cfg.json": json.dumps(preprocess).encode(),
        "visual/model.onnx": (tiny / "image.onnx").read_bytes(),
        "textual/model.onnx": (tiny / "text.onnx").read_bytes(),
    }
    prefix = f"/{SOURCE.repository}/resolve/{commit}/"
    return {prefix + path: body for path, body in remote.items()}


@pytest.fixture()
def server(monkeypatch, tmp_path) -> Iterator[PinnedSourceServer]:
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "cache"))
    source = PinnedSourceServer(immich_layout(TINY_MODEL))
    monkeypatch.setenv(URL_TEMPLATE_VARIABLE, source.template)
    monkeypatch.setenv(COMMIT_TEMPLATE_VARIABLE, source.commit_template)
    thread = threading.Thread(target=source.serve_forever, daemon=True)
    thread.start()
    yield source
    source.shutdown()
    source.server_close()


def image_tower_path(commit: str = FIRST_COMMIT) -> str:
    return f"/{SOURCE.repository}/resolve/{commit}/visual/model.onnx"


def test_pull_writes_a_model_folder_that_embeds_as_openclip(server, reference):
    folder = pull_model("clip-vit-b32")
    assert folder.path.name == "clip-vit-b32"
    assert folder.config.image_size == 64 and folder.config.embed_dim == 16
    assert (folder.path / "image.onnx").read_bytes() == (TINY_MODEL / "image.onnx").read_bytes()
    embedder = load_clip_embedder("clip-vit-b32")
    name = str(reference["image_names"][0])
    vector = embedder.embed_bytes((FIXTURES / "images" / name).read_bytes(), name)
    assert np.abs(vector - reference["image_embeddings"][0]).max() < 1e-4


def test_a_second_pull_downloads_nothing(server):
    pull_model("clip-vit-b32")
    count = len(server.requests)
    pull_model("clip-vit-b32")
    assert len(server.requests) == count


def test_an_interrupted_download_resumes_where_it_stopped(server):
    size = len(server.files[image_tower_path()])
    server.cut_after[image_tower_path()] = size // 3
    with pytest.raises(PullError, match=f"stopped after {size // 3} of {size} bytes.*again"):
        pull_model("clip-vit-b32")
    folder = pull_model("clip-vit-b32")
    ranges = [header for path, header in server.requests if path == image_tower_path()]
    assert ranges == [None, f"bytes={size // 3}-"]
    assert (folder.path / "image.onnx").read_bytes() == server.files[image_tower_path()]


def test_later_pulls_fetch_the_commit_the_first_pull_found(server, tmp_path):
    first = pull_model("clip-vit-b32")
    assert first.config.source["revision"] == FIRST_COMMIT
    assert first.config.source["branch"] == SOURCE.revision
    # The branch moves on to a commit whose image tower differs; the cached model is lost.
    server.branches[SOURCE.revision] = LATER_COMMIT
    for path, body in immich_layout(TINY_MODEL, LATER_COMMIT).items():
        server.files[path] = body[:-8] + b"newer..." if path.endswith("model.onnx") else body
    (tmp_path / "cache" / "models" / "clip-vit-b32" / "image.onnx").unlink()
    again = pull_model("clip-vit-b32")
    fetched = [path for path, _ in server.requests if "/resolve/" in path]
    assert image_tower_path(FIRST_COMMIT) in fetched[-1:]
    assert not any(LATER_COMMIT in path for path, _ in server.requests)
    assert (again.path / "image.onnx").read_bytes() == (TINY_MODEL / "image.onnx").read_bytes()


def test_a_changed_published_file_is_refused(server, tmp_path):
    pull_model("clip-vit-b32")
    original = server.files[image_tower_path()]
    server.files[image_tower_path()] = original[:-8] + b"tampered"
    (tmp_path / "cache" / "models" / "clip-vit-b32" / "image.onnx").unlink()
    with pytest.raises(PullError, match="differs from .* recorded when this file was first"):
        pull_model("clip-vit-b32")
    assert not (tmp_path / "cache" / "models" / "clip-vit-b32" / "image.onnx").exists()


def test_offline_is_one_line_saying_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "cache"))
    closed = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    port = closed.server_port
    closed.server_close()  # nothing listens there any more
    monkeypatch.setenv(URL_TEMPLATE_VARIABLE, f"http://127.0.0.1:{port}/{{repository}}/{{path}}")
    with pytest.raises(PullError) as raised:
        pull_model("clip-vit-b32")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach 127.0.0.1:{port} (")
    assert "needs the internet" in message and "--model clip:FOLDER" in message


def test_an_unpulled_model_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="not downloaded yet; run `foldervision models pull"):
        load_clip_embedder("clip-vit-b32")
