"""`foldervision info`: what a library holds, read from its index without changing it.

Real photos with the EXIF a camera writes, indexed by the network-free colour-layout embedder;
`info` itself runs as a user runs it, in a fresh process (its plain output is snapshot-tested
in tests/cli/test_snapshots.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from photo_library import FIXED_FILE_TIME, camera_exif, write_photo
from PIL import Image
from serve_fixtures import folder_snapshot
from user_process import run_as_user, run_cli

from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings


@pytest.fixture
def library(photo_folder: Path) -> Path:
    """The test photos: three with a camera's EXIF (one with GPS), the rest with a file time."""
    exifs = {
        "astronaut.jpg": camera_exif(taken="2019:08:10 11:00:00", make="Canon",
                                     model="Canon EOS 5D", position=(48.8584, 2.2945)),
        "chelsea.jpeg": camera_exif(taken="2023:06:02 09:15:00", offset="+02:00",
                                    make="Apple", model="iPhone 12"),
        "café au lait.webp": camera_exif(taken="2023:07:20 16:40:00", make="Apple",
                                         model="iPhone 12"),
    }  # fmt: skip
    for path in photo_folder.iterdir():
        if path.name in exifs:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            write_photo(path, pixels, exifs[path.name])
        os.utime(path, (FIXED_FILE_TIME, FIXED_FILE_TIME))
    with RetrievalService.open(
        IndexSettings(photo_folder), embedder=colour_layout_embedder()
    ) as service:
        service.update()
    return photo_folder


def info_json(folder: Path) -> dict:
    result = run_cli("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_says_what_the_library_holds(library: Path, broken_photos: list[str]) -> None:
    before = folder_snapshot(library / ".foldervision")
    info = info_json(library)

    assert info["images"] == 7 and info["database"] == str(library)
    assert info["extensions"] == {".jpg": 1, ".jpeg": 1, ".png": 1, ".bmp": 1, ".gif": 1,
                                  ".webp": 1, ".tif": 1}  # fmt: skip
    assert info["formats"] == {"BMP": 1, "GIF": 1, "JPEG": 2, "PNG": 1, "TIFF": 1, "WEBP": 1}
    assert sum(reason["files"] for reason in info["skipped"]) == len(broken_photos)
    assert sorted(path for reason in info["skipped"] for path in reason["examples"]) == sorted(
        broken_photos
    )
    assert all(library.name not in reason["reason"] for reason in info["skipped"])
    assert (info["taken_first"], info["taken_last"]) == ("2019-08-10T11:00:00",
                                                         "2023-07-20T16:40:00")  # fmt: skip
    assert (info["taken_from_exif"], info["taken_from_file"]) == (3, 4)
    assert info["taken_by_year"] == {"2019": 1, "2020": 4, "2023": 2}
    assert info["cameras"] == {"Apple iPhone 12": 2, "Canon EOS 5D": 1, "no camera": 4}
    assert info["with_position"] == 1 and info["without_metadata"] == 0
    assert info["spec"]["model"] == "colour-layout" and "colour-layout" in info["model"]
    assert info["stores"] == {"faiss": {"vectors": 7, "index_file": {
        "kind": "exact", "lists": 0, "probes": 0, "recall": None, "target": None,
        "summary": "exact", "current": True}}}  # fmt: skip
    index_bytes = (library / ".foldervision" / "index.sqlite").stat().st_size
    assert info["disk_bytes"]["index"] == index_bytes
    assert info["disk_bytes"]["index_file"] > 0
    assert folder_snapshot(library / ".foldervision") == before  # read, never written


def test_info_loads_no_network(library: Path) -> None:
    script = (
        "import sys\n"
        "from foldervision.cli import main\n"
        "try:\n    main(['info', sys.argv[1]])\nexcept SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'onnxruntime', 'faiss', 'torch') "
        "if m in sys.modules))\n"
    )
    result = run_as_user(sys.executable, "-c", script, library)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "images      7: " in result.stdout


def test_an_unindexed_folder_is_one_line_saying_to_index_it(photo_folder: Path) -> None:
    result = run_cli("info", photo_folder)

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {photo_folder}: not indexed yet ({photo_folder}/.foldervision/index.sqlite does "
        f"not exist); run foldervision index {photo_folder} first."
    ]
    assert not (photo_folder / ".foldervision").exists()


def test_an_index_from_before_metadata_is_described_as_it_is(library: Path) -> None:
    index_path = library / ".foldervision" / "index.sqlite"
    with sqlite3.connect(index_path) as connection:
        connection.execute("DROP TABLE photos")

    info = info_json(library)
    plain = run_cli("info", library)

    assert info["images"] == 7 and info["without_metadata"] == 7
    assert info["cameras"] == {} and info["taken_first"] is None
    assert "no dates read yet" in plain.stdout and plain.returncode == 0
    with sqlite3.connect(index_path) as connection:  # still not upgraded: info only reads
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "photos" not in tables
