"""`foldervision serve`: where it listens, what it warns about, and one-line errors.

The command runs for real up to uvicorn; `run_server` is replaced by one that serves the app
in a thread on the very socket the command bound, fetches the page and stops.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from fake_embedders import colour_layout_embedder
from typer.testing import CliRunner

from foldervision.cli import app as cli_app
from foldervision.retrieval import service as retrieval_service
from foldervision.web import server as web_server


@pytest.fixture
def fetched_pages(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record, for each serve run, the bound address and what the real server answered."""
    pages: list[dict] = []
    load_embedder = retrieval_service.load_embedder

    def colour_layout_unless_clip(settings):  # a CLIP model is loaded for real (it is tiny)
        clip = settings.model.startswith("clip:")
        return load_embedder(settings) if clip else colour_layout_embedder()

    monkeypatch.setattr(retrieval_service, "load_embedder", colour_layout_unless_clip)

    def serve_once(app: object, sock: socket.socket) -> None:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(0.02)
        try:
            url = web_server.url_of(sock)
            host = "127.0.0.1" if sock.family == socket.AF_INET else "[::1]"
            port = sock.getsockname()[1]
            page = httpx.get(f"http://{host}:{port}/", timeout=30)
            search = httpx.get(
                f"http://{host}:{port}/api/search", params={"path": "q1.png", "root": "queries"}
            )
            words = httpx.get(f"http://{host}:{port}/api/search-text", params={"q": "receipt"})
            pages.append(
                {
                    "address": sock.getsockname()[0],
                    "url": url,
                    "page": page.text,
                    "search": search.json(),
                    "words": (words.status_code, words.json()),
                }
            )
        finally:
            server.should_exit = True
            thread.join(10)

    monkeypatch.setattr(web_server, "run_server", serve_once)
    return pages


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """The repository's digits with its query_images/ beside it, as the assignment has them."""
    import shutil

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "query_images", tmp_path / "query_images")
    return Path(shutil.copytree(repo / "images_database", tmp_path / "images_database"))


def test_serve_listens_on_loopback_by_default_and_is_warm(database: Path, fetched_pages):
    result = CliRunner().invoke(cli_app, ["serve", str(database), "--port", "0"])

    assert result.exit_code == 0, result.output
    [served] = fetched_pages
    assert served["address"] == "127.0.0.1"
    assert "warning" not in result.stderr
    assert f"serving {database} at http://127.0.0.1:" in result.stderr
    assert "90 images" in served["page"]
    assert 'data-root="queries" data-path="q1.png"' in served["page"]
    assert len(served["search"]["results"]) == 4
    assert (database / ".foldervision" / "index.sqlite").is_file()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_warns_when_listening_on_all_interfaces(database: Path, fetched_pages, host: str):
    if host == "::" and not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    result = CliRunner().invoke(cli_app, ["serve", str(database), "--host", host, "--port", "0"])

    assert result.exit_code == 0, result.output
    assert "warning: listening on all interfaces" in result.stderr
    assert fetched_pages[0]["address"] == host


def test_serve_searches_by_words_with_a_clip_index_and_says_how_to_make_one(
    database: Path, fetched_pages
):
    tiny_clip = Path(__file__).resolve().parents[1] / "clip" / "fixtures" / "tiny-clip"
    without = CliRunner().invoke(cli_app, ["serve", str(database), "--port", "0"])
    with_words = CliRunner().invoke(
        cli_app, ["serve", str(database), "--port", "0", "--text-model", f"clip:{tiny_clip}"]
    )

    assert without.exit_code == 0 and with_words.exit_code == 0, with_words.stderr
    first, second = fetched_pages
    status, answer = first["words"]
    assert status == 409 and answer["error"].startswith("To search by words, index the folder")
    assert answer["error"] in first["page"] and 'id="words-hint"' in first["page"]
    status, answer = second["words"]
    assert status == 200 and answer["query"] == "receipt" and len(answer["results"]) == 4
    assert 'id="words-hint"' not in second["page"]
    assert (database / ".foldervision" / "index.tiny-clip.sqlite").is_file()
    assert "indexed 90 new or changed" in with_words.stderr  # the CLIP index, made first


def test_serve_mistakes_print_one_line(database: Path, fetched_pages, tmp_path: Path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        in_use = CliRunner().invoke(cli_app, ["serve", str(database), "--port", port])
    bad_k = CliRunner().invoke(cli_app, ["serve", str(database), "-k", "0"])
    no_folder = CliRunner().invoke(cli_app, ["serve", str(tmp_path / "nowhere"), "--port", "0"])
    bad_queries = CliRunner().invoke(
        cli_app, ["serve", str(database), "--queries", str(tmp_path / "none"), "--port", "0"]
    )
    not_clip = CliRunner().invoke(
        cli_app, ["serve", str(database), "--text-model", "mobilenetv2", "--port", "0"]
    )

    for result, expected in [
        (in_use, f"127.0.0.1:{port}: cannot listen there"),
        (bad_k, "k must be between 1 and 100, got 0; pass another -k."),
        (no_folder, "not a folder"),
        (bad_queries, "not a folder; pass a folder of query images"),
        (not_clip, "--text-model mobilenetv2: not a CLIP model; pass clip-vit-b32"),
    ]:
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert fetched_pages == []


def test_the_listening_socket_sends_small_answers_without_delay():
    """uvicorn does not set TCP_NODELAY on sockets it is given; without it each answer waits
    ~40 ms for a delayed ACK (measured by benchmarks/serve_latency.py)."""
    with web_server.listen("127.0.0.1", 0) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockname()[0] == "127.0.0.1"


def test_serve_watch_indexes_a_photo_copied_in_while_serving(
    database: Path, monkeypatch: pytest.MonkeyPatch
):
    """`serve --watch`: a photo copied into the folder is counted and searchable without a
    restart, and the watcher stops with the server."""
    import shutil
    import time

    load_embedder = retrieval_service.load_embedder

    def colour_layout_unless_clip(settings):  # a CLIP model is loaded for real (it is tiny)
        clip = settings.model.startswith("clip:")
        return load_embedder(settings) if clip else colour_layout_embedder()

    monkeypatch.setattr(retrieval_service, "load_embedder", colour_layout_unless_clip)
    seen: dict = {}

    def serve_and_copy(app: object, sock: socket.socket) -> None:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(0.02)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            seen["page"] = httpx.get(base + "/", timeout=30).text
            shutil.copy(database.parent / "query_images" / "q1.png", database / "copied.png")
            deadline = time.monotonic() + 60
            while httpx.get(base + "/api/info").json()["images"] == 90:
                assert time.monotonic() < deadline, "the copied photo was never indexed"
                time.sleep(0.1)
            seen["search"] = httpx.get(base + "/api/search", params={"path": "copied.png"}).json()
        finally:
            server.should_exit = True
            thread.join(10)

    monkeypatch.setattr(web_server, "run_server", serve_and_copy)
    result = CliRunner().invoke(cli_app, ["serve", str(database), "--port", "0", "--watch"])

    assert result.exit_code == 0, result.output
    assert f"watching {database} for changes" in result.stderr
    assert "following the folder" in seen["page"]
    assert seen["search"]["results"][0]["path"] == "copied.png"
    assert seen["search"]["results"][0]["distance"] == pytest.approx(0, abs=1e-6)
    assert "indexed 1 new or changed" in result.stderr
    assert not any(thread.name == "foldervision-watch" for thread in threading.enumerate())
