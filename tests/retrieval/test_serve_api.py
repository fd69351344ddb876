"""The web API on a real uvicorn server: answers, files it may and may not serve, bad uploads.

Most tests use the network-free colour-layout embedder over real photos; the concurrency test
uses the real MobileNetV2 and checks the answers against `foldervision search --json`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from image_fixtures import oversized_png_header
from PIL import Image
from serve_fixtures import folder_snapshot, live_server, noise_bmp, post_streaming, raw_get
from typer.testing import CliRunner

from foldervision.cli import app as cli_app
from foldervision.retrieval.reranking import Diffusion, QueryExpansion
from foldervision.retrieval.service import MAX_TOP_K, RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import MAX_UPLOAD_BYTES, create_app, default_query_folder


@pytest.fixture
def query_folder(photo_folder: Path) -> Path:
    """`query_images/` beside the database, as the assignment lays it out: crops, not indexed."""
    folder = photo_folder.parent / "query_images"
    folder.mkdir()
    with Image.open(photo_folder / "chelsea.jpeg") as image:
        image.crop((10, 10, 140, 100)).save(folder / "cat crop.png")
    with Image.open(photo_folder / "ROCKET.BMP") as image:
        image.convert("RGB").save(folder / "rocket.jpg")
    return folder


@pytest.fixture
def served(photo_folder: Path, query_folder: Path):
    """(base URL, service) for the photo folder, with its query folder, on a live server."""
    service = RetrievalService.open(IndexSettings(photo_folder), embedder=colour_layout_embedder())
    service.update()
    service.warm_up()
    with service, live_server(create_app(service, default_query_folder(photo_folder))) as url:
        yield url, service


def test_the_page_shows_the_index_and_the_query_folder(served, query_folder: Path):
    url, service = served
    page = httpx.get(url + "/")

    assert page.status_code == 200
    assert f"{len(service.index)} images" in page.text
    assert service.info().embedder in page.text
    assert 'data-root="queries" data-path="cat crop.png"' in page.text
    assert 'data-path="rocket.jpg"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_api_info_says_what_the_index_holds(served, photo_folder: Path, broken_photos):
    url, service = served
    response = httpx.get(url + "/api/info")

    assert response.status_code == 200
    info = response.json()
    assert info == {
        "database": str(photo_folder),
        "images": 7,
        "skipped": len(broken_photos),
        "embedder": service.info().embedder,
        "updated_at": pytest.approx(service.info().updated_at),
        "index_path": str(photo_folder / ".foldervision" / "index.sqlite"),
    }
    assert "colour-layout" in info["embedder"]


def test_without_a_query_folder_the_library_is_what_to_pick_from(photo_folder: Path):
    settings = IndexSettings(photo_folder)
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        with live_server(create_app(service, default_query_folder(photo_folder))) as url:
            page = httpx.get(url + "/").text
            listed = httpx.get(url + "/api/files", params={"sort": "path"}).json()
    assert 'data-root="queries"' not in page and 'id="strip"' not in page
    assert 'id="grid"' in page
    assert [file["path"] for file in listed["files"]][:2] == ["Coffee.PNG", "ROCKET.BMP"]
    assert listed["total"] == 7


def test_an_empty_database_gets_a_message_not_a_blank_page(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    settings = IndexSettings(tmp_path / "empty")
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        with live_server(create_app(service)) as url:
            page = httpx.get(url + "/")
            search = httpx.post(url + "/api/search", files={"file": ("a.png", b"x")})
    assert page.status_code == 200
    assert "holds no images yet" in page.text and 'class="message error"' in page.text
    assert search.status_code == 409 and "holds no images yet" in search.json()["error"]


def test_path_upload_and_query_folder_searches_agree_with_relative_paths(served, query_folder):
    url, service = served
    by_path = httpx.get(url + "/api/search", params={"path": "chelsea.jpeg", "k": 3})
    with open(service.database / "chelsea.jpeg", "rb") as handle:
        upload = httpx.post(
            url + "/api/search", files={"file": ("mine.jpeg", handle)}, data={"k": "3"}
        )
    from_queries = httpx.get(url + "/api/search", params={"path": "rocket.jpg", "root": "queries"})
    rocket_upload = httpx.post(
        url + "/api/search", files={"file": ("r.jpg", (query_folder / "rocket.jpg").read_bytes())}
    )

    assert by_path.status_code == upload.status_code == from_queries.status_code == 200
    answer = by_path.json()
    assert answer["query"] == "chelsea.jpeg"
    assert [r["rank"] for r in answer["results"]] == [1, 2, 3]
    assert answer["results"][0] == {"rank": 1, "path": "chelsea.jpeg", "distance": 0.0}
    assert upload.json()["query"] == "mine.jpeg"
    assert [r["path"] for r in upload.json()["results"]] == [r["path"] for r in answer["results"]]
    np.testing.assert_allclose(
        [r["distance"] for r in upload.json()["results"]],
        [r["distance"] for r in answer["results"]],
        atol=1e-3,
    )
    assert len(from_queries.json()["results"]) == 4  # the default k
    assert from_queries.json()["results"] == rocket_upload.json()["results"]
    assert all(not r["path"].startswith("/") for r in from_queries.json()["results"])
    assert float(by_path.headers["x-search-ms"]) >= 0
    assert by_path.headers["server-timing"].startswith("app;dur=")


def test_originals_and_thumbnails_are_served(served, query_folder):
    url, service = served
    original = httpx.get(url + "/images/db/%E7%8C%AB%20cat.tif")
    thumb = httpx.get(url + "/thumbs/db/astronaut.jpg")
    query_thumb = httpx.get(url + "/thumbs/queries/cat%20crop.png")

    assert original.content == (service.database / "猫 cat.tif").read_bytes()
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) <= 256 and image.format == "JPEG"
    assert query_thumb.status_code == 200
    assert httpx.get(url + "/thumbs/db/broken.jpg").status_code == 404


def test_a_thumbnail_is_remade_when_its_original_changes(served, photo_folder: Path):
    url, _ = served
    first = httpx.get(url + "/thumbs/db/astronaut.jpg")
    Image.new("RGB", (300, 100), (200, 30, 30)).save(photo_folder / "astronaut.jpg")
    second = httpx.get(url + "/thumbs/db/astronaut.jpg")
    third = httpx.get(url + "/thumbs/db/astronaut.jpg")

    assert first.status_code == second.status_code == 200
    with Image.open(io.BytesIO(first.content)) as before:
        assert before.size == (160, 160)  # the square astronaut photo, as the fixture wrote it
    with Image.open(io.BytesIO(second.content)) as after:
        assert after.size == (256, 85)  # the new 3:1 picture, at most 256 pixels wide
        red, green, blue = np.asarray(after.convert("RGB"), np.float64).mean(axis=(0, 1))
        assert red > 180 and green < 50 and blue < 50
    assert third.content == second.content  # kept once made

    # A version restored from a backup carries an older date than the thumbnail: remade too.
    Image.new("RGB", (100, 100), (30, 30, 200)).save(photo_folder / "astronaut.jpg")
    os.utime(photo_folder / "astronaut.jpg", (1_000_000_000, 1_000_000_000))
    restored = httpx.get(url + "/thumbs/db/astronaut.jpg")
    with Image.open(io.BytesIO(restored.content)) as image:
        red, green, blue = np.asarray(image.convert("RGB"), np.float64).mean(axis=(0, 1))
        assert image.size == (100, 100) and blue > 180 and red < 50


@pytest.fixture
def outside_image(photo_folder: Path) -> Path:
    """An image outside both roots, and a symlink inside the database that points at it."""
    secret = photo_folder.parent / "secret" / "private.png"
    secret.parent.mkdir()
    Image.new("RGB", (8, 8), "red").save(secret)
    (photo_folder / "link.png").symlink_to(secret)
    (photo_folder / "sub").mkdir()
    return secret


@pytest.mark.parametrize("prefix", ["/images/db/", "/thumbs/db/", "/images/queries/"])
@pytest.mark.parametrize(
    "raw",
    [
        "../secret/private.png",
        "sub/../../secret/private.png",
        "%2e%2e/secret/private.png",
        "%2e%2e%2fsecret%2fprivate.png",
        "%252e%252e%252fsecret%252fprivate.png",
        "..%5csecret%5cprivate.png",
        "..\\secret\\private.png",
        "/{secret}",
        "%2F{secret}",
        "link.png",
        ".foldervision/index.sqlite",
        "notes.txt",
        "missing.png",
    ],
)
def test_nothing_outside_the_roots_is_served(served, outside_image: Path, prefix: str, raw: str):
    url, _ = served
    status, body = raw_get(url, prefix + raw.format(secret=outside_image.as_posix().lstrip("/")))
    assert status == 404
    assert outside_image.read_bytes() not in body
    assert "\n" not in json.loads(body)["error"]


def test_searching_by_a_path_outside_the_roots_is_refused(served, outside_image: Path):
    url, _ = served
    for path in ("../secret/private.png", str(outside_image), "link.png", "..\\x.png"):
        response = httpx.get(url + "/api/search", params={"path": path})
        assert response.status_code == 404, path
    assert httpx.get(url + "/api/search", params={"path": "astronaut.jpg"}).status_code == 200


@pytest.mark.parametrize("kind", ["images", "thumbs", "search"])
def test_an_unknown_root_gets_404_with_one_line(served, kind: str):
    url, _ = served
    for root in ("elsewhere", "DB", "queries2"):
        if kind == "search":
            params = {"path": "astronaut.jpg", "root": root}
            response = httpx.get(url + "/api/search", params=params)
        else:
            response = httpx.get(f"{url}/{kind}/{root}/astronaut.jpg")
        assert response.status_code == 404, root
        assert response.json()["error"] == f"{root}: no such root; use one of db, queries"


def test_a_query_folder_root_exists_only_when_there_is_a_query_folder(photo_folder: Path):
    settings = IndexSettings(photo_folder)
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        with live_server(create_app(service)) as url:
            search = httpx.get(url + "/api/search", params={"path": "x.png", "root": "queries"})
            thumb = httpx.get(url + "/thumbs/queries/x.png")
    for response in (search, thumb):
        assert response.status_code == 404
        assert response.json()["error"] == "queries: no such root; use one of db"


def test_k_over_the_maximum_or_not_a_number_gets_400_on_get_and_post(served, photo_folder):
    url, _ = served
    upload = (photo_folder / "Coffee.PNG").read_bytes()

    def post(k: str) -> httpx.Response:
        return httpx.post(url + "/api/search", files={"file": ("c.png", upload)}, data={"k": k})

    too_many = f"k must be between 1 and {MAX_TOP_K}, got {MAX_TOP_K + 1}."
    answers = {
        "get over": httpx.get(url + "/api/search", params={"path": "astronaut.jpg", "k": 101}),
        "post over": post("101"),
        "post zero": post("0"),
        "post word": post("many"),
    }
    for case, response in answers.items():
        error = response.json()["error"]
        assert response.status_code == 400, case
        assert error.startswith("k") and "\n" not in error, case
    assert answers["get over"].json()["error"] == too_many
    assert answers["post over"].json()["error"] == too_many
    assert answers["post word"].json()["error"].startswith("k: Input should be a valid integer")
    widest = httpx.get(url + "/api/search", params={"path": "astronaut.jpg", "k": MAX_TOP_K})
    assert widest.status_code == 200 and len(widest.json()["results"]) == 7  # all it holds


def test_bad_uploads_get_400_with_one_line_naming_the_file(served, photo_folder: Path):
    url, _ = served
    jpeg = (photo_folder / "astronaut.jpg").read_bytes()
    cases = {
        "notes.png": b"this is not an image",
        "half.jpg": jpeg[: len(jpeg) // 3],
        "bomb.png": oversized_png_header(60_000, 60_000),
    }
    for name, data in cases.items():
        response = httpx.post(url + "/api/search", files={"file": (name, data)})
        error = response.json()["error"]
        assert response.status_code == 400, name
        assert error.startswith(f"{name}: ") and "\n" not in error and "Traceback" not in error
        assert "BytesIO" not in error
    assert (
        "decompression bomb"
        in httpx.post(url + "/api/search", files={"file": ("bomb.png", cases["bomb.png"])}).json()[
            "error"
        ]
    )
    for params in ({"path": "astronaut.jpg", "k": "0"}, {"path": "astronaut.jpg", "k": "many"}):
        response = httpx.get(url + "/api/search", params=params)
        assert response.status_code == 400 and response.json()["error"].startswith("k")
    missing_file = httpx.post(url + "/api/search", data={"k": "2"})
    assert missing_file.status_code == 400 and missing_file.json()["error"].startswith("file")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_over_20_mb_gets_413_before_it_is_read_whole(served, chunked: bool):
    url, _ = served
    image = noise_bmp(48)
    assert len(image) > 2 * MAX_UPLOAD_BYTES

    answer, sent, total = post_streaming(url, image, chunked=chunked)

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"larger than 20 MB" in answer
    assert sent < total  # answered while the client was still sending
    assert httpx.get(url + "/api/search", params={"path": "astronaut.jpg"}).status_code == 200


def test_nothing_is_written_into_the_database_folder(photo_folder: Path, query_folder, tmp_path):
    before = folder_snapshot(photo_folder)
    index = tmp_path / "elsewhere" / "index.sqlite"
    settings = IndexSettings(photo_folder, index_path=index)
    with RetrievalService.open(settings, embedder=colour_layout_embedder()) as service:
        service.update()
        with live_server(create_app(service, query_folder)) as url:
            assert httpx.get(url + "/").status_code == 200
            assert httpx.get(url + "/thumbs/db/astronaut.jpg").status_code == 200
            assert httpx.get(url + "/thumbs/queries/rocket.jpg").status_code == 200
            upload = (photo_folder / "Coffee.PNG").read_bytes()
            assert httpx.post(url + "/api/search", files={"file": ("c.png", upload)}).is_success
    assert folder_snapshot(photo_folder) == before
    thumbs = sorted(p.relative_to(index.parent).as_posix() for p in index.parent.rglob("*.jpg"))
    assert thumbs == [
        ".foldervision-thumbs/db/astronaut.jpg.jpg",
        ".foldervision-thumbs/queries/rocket.jpg.jpg",
    ]


def test_50_concurrent_searches_match_the_cli(
    photo_folder: Path, query_folder: Path, cli_uses_session_embedder, tmp_path: Path
):
    """8 client threads, 50 searches (uploads, indexed paths, query-folder files) at once."""
    database = Path(shutil.copytree(photo_folder, tmp_path / "cli copy"))
    queries = sorted(query_folder.iterdir()) + [
        database / name for name in ("astronaut.jpg", "Coffee.PNG", "猫 cat.tif")
    ]
    cli = CliRunner().invoke(
        cli_app,
        ["search", *map(str, queries), "-d", str(database), "-k", "3", "--json"]
        + ["--image-size", "96"],
    )
    assert cli.exit_code == 0, cli.output
    expected = {}
    for line in cli.stdout.splitlines():
        answer = json.loads(line)
        expected[Path(answer["query"]).name] = [
            (os.path.relpath(r["path"], database), r["distance"]) for r in answer["results"]
        ]
    assert len(expected) == len(queries)

    service = RetrievalService.open(IndexSettings(photo_folder), embedder=cli_uses_session_embedder)
    service.update()

    def one_search(number: int) -> tuple[str, int, list]:
        query = queries[number % len(queries)]
        kind = number % 3
        if kind == 0:
            response = client.post(
                "/api/search", files={"file": (query.name, query.read_bytes())}, data={"k": "3"}
            )
        elif query.parent == query_folder:
            params = {"path": query.name, "root": "queries", "k": 3}
            response = client.get("/api/search", params=params)
        else:
            response = client.get("/api/search", params={"path": query.name, "k": 3})
        results = response.json().get("results", []) if response.is_success else response.text
        return query.name, response.status_code, results

    with (
        service,
        live_server(create_app(service, query_folder)) as url,
        httpx.Client(base_url=url, timeout=120) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(one_search, range(50)))

    assert len(answers) == 50
    for name, status, results in answers:
        assert status == 200, results
        assert [r["path"] for r in results] == [path for path, _ in expected[name]]
        np.testing.assert_allclose(
            [r["distance"] for r in results], [d for _, d in expected[name]], atol=1e-3
        )


@pytest.mark.parametrize("reranking", [Diffusion(), QueryExpansion(2)], ids=["diffuse", "expand"])
def test_serve_with_a_reranking_reranks_every_search_as_search_does_and_says_so(
    photo_folder: Path, query_folder: Path, reranking
):
    service = RetrievalService.open(IndexSettings(photo_folder), embedder=colour_layout_embedder())
    service.update()
    web_app = create_app(service, default_query_folder(photo_folder), reranking=reranking)
    with service, live_server(web_app) as url:
        by_path = httpx.get(url + "/api/search", params={"path": "chelsea.jpeg", "k": 5})
        upload = httpx.post(
            url + "/api/search",
            files={"file": ("r.jpg", (query_folder / "rocket.jpg").read_bytes())},
            data={"k": "5"},
        )
        expected_path = service.search_folder_file("chelsea.jpeg", 5, reranking=reranking)
        expected_upload = service.search_bytes(
            (query_folder / "rocket.jpg").read_bytes(), "r.jpg", 5, reranking=reranking
        )
        plain = service.search_folder_file("chelsea.jpeg", 5)

    assert by_path.status_code == upload.status_code == 200
    for answer, expected in ((by_path.json(), expected_path), (upload.json(), expected_upload)):
        assert answer["reranking"] == reranking.describe()
        assert [match["path"] for match in answer["results"]] == [
            match.path for match in expected.matches
        ]
        np.testing.assert_allclose(
            [match["distance"] for match in answer["results"]],
            [match.distance for match in expected.matches],
            atol=1e-6,
        )
    if isinstance(reranking, QueryExpansion):  # distances from the expanded query, not the query
        assert [m["distance"] for m in by_path.json()["results"]] != [
            m.distance for m in plain.matches
        ]


def test_serve_refuses_two_rerankings_in_one_line(photo_folder: Path):
    result = CliRunner().invoke(cli_app, ["serve", str(photo_folder), "--expand", "2", "--diffuse"])
    assert result.exit_code != 0
    assert "choose one re-ranking" in result.stderr
    assert "Traceback" not in result.stderr
