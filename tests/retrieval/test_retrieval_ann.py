"""The index file beside the catalogue: persistence, incremental updates, staleness, --ann."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import colour_layout_embedder
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.retrieval import service as retrieval_service
from foldervision.retrieval.index import ImageIndex, default_index_path
from foldervision.retrieval.settings import IndexSettings
from foldervision.retrieval.stores import StoreLocation, ann

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("exact", "approximate")


def write_photo_folder(folder: Path, template: Path) -> Path:
    """Real photos (the shared fixture's readable ones) to index with a network-free embedder."""
    shutil.copytree(template, folder, ignore=shutil.ignore_patterns("broken*", "not *"))
    return folder


def index_file(folder: Path) -> Path:
    return default_index_path(folder).with_suffix(".faiss")


def ids_in_index_file(path: Path) -> list[int]:
    """The ids a FAISS index file holds, read with FAISS itself (exact or IVF)."""
    import faiss

    index = faiss.read_index(str(path))
    if isinstance(index, faiss.IndexIDMap2):
        return sorted(faiss.vector_to_array(index.id_map).tolist())
    lists = index.invlists
    ids: list[int] = []
    for number in range(index.nlist):
        size = lists.list_size(number)
        if size:
            ids.extend(faiss.rev_swig_ptr(lists.get_ids(number), size).tolist())
    return sorted(ids)


def open_index(folder: Path, mode: str | None = None) -> ImageIndex:
    settings = IndexSettings(folder, store_location=StoreLocation(ann=mode))
    return ImageIndex.open(settings, colour_layout_embedder().spec)


@pytest.mark.parametrize("kind", KINDS)
def test_index_file_is_written_and_searched_from_another_process_without_rebuilding(
    tmp_path: Path, photo_folder_template: Path, kind: str
) -> None:
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    embedder = colour_layout_embedder()
    with open_index(folder, kind) as index:
        index.update(embedder)
        query = index.vector_of("chelsea.jpeg")
        [expected] = index.search(query, k=3)
    written = index_file(folder).stat()
    assert ann.read_index_info(index_file(folder)).kind == kind

    script = (
        "import json, sys, numpy as np\n"
        "from foldervision.retrieval.catalogue import Catalogue\n"
        "from foldervision.retrieval.stores.faiss import SQLiteFaissStore\n"
        "catalogue = Catalogue.open(sys.argv[1])\n"
        "store = SQLiteFaissStore(catalogue, catalogue.stored_spec())\n"
        "distances, ids = store.search(np.asarray(json.loads(sys.argv[2]), np.float32), 3)\n"
        "paths = catalogue.paths_of(ids[0])\n"
        "print(json.dumps([[paths[int(i)], float(d)] for d, i in zip(distances[0], ids[0])]))\n"
    )
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(default_index_path(folder)),
            json.dumps([query.tolist()]),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )

    found = json.loads(child.stdout)
    assert [path for path, _ in found] == [path for path, _ in expected]
    np.testing.assert_allclose([d for _, d in found], [d for _, d in expected], atol=1e-5)
    after = index_file(folder).stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


@pytest.mark.parametrize("kind", KINDS)
def test_added_and_removed_files_change_the_index_file_by_id_without_a_rebuild(
    tmp_path: Path, photo_folder_template: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    embedder = colour_layout_embedder()
    with open_index(folder, kind) as index:
        index.update(embedder)
        removed_id = int(index.catalogue.ids_of(["astronaut.jpg"])[0])
    builds: list[str] = []
    original_build = ann.build_index
    monkeypatch.setattr(
        ann, "build_index", lambda kind, *rest: builds.append(kind) or original_build(kind, *rest)
    )
    (folder / "astronaut.jpg").unlink()
    shutil.copy(folder / "Coffee.PNG", folder / "added copy.png")

    with open_index(folder) as index:
        update = index.update(embedder)
        catalogue_ids = sorted(index.catalogue.ids().tolist())
        added_id = int(index.catalogue.ids_of(["added copy.png"])[0])
        [neighbours] = index.search(index.vector_of("added copy.png"), k=2)

    assert update.embedded == ["added copy.png"] and update.removed == ["astronaut.jpg"]
    assert builds == []  # changed in place, not rebuilt
    in_file = ids_in_index_file(index_file(folder))
    assert in_file == catalogue_ids and removed_id not in in_file and added_id in in_file
    assert sorted(path for path, _ in neighbours) == ["Coffee.PNG", "added copy.png"]
    assert ann.read_index_info(index_file(folder)).kind == kind


def test_a_folder_emptied_and_filled_again_is_searchable(
    tmp_path: Path, photo_folder_template: Path
) -> None:
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    aside = tmp_path / "aside"
    aside.mkdir()
    embedder = colour_layout_embedder()
    with open_index(folder) as index:
        index.update(embedder)
    for path in folder.iterdir():
        if path.is_file():
            path.rename(aside / path.name)
    with open_index(folder) as index:
        index.update(embedder)
        assert len(index.store) == 0
    index_file(folder).unlink()  # lost: the empty collection is rebuilt from nothing
    with open_index(folder) as index:
        index.update(embedder)
    (aside / "ROCKET.BMP").rename(folder / "ROCKET.BMP")

    with open_index(folder) as index:
        index.update(embedder)
        [neighbours] = index.search(index.vector_of("ROCKET.BMP"), k=3)
        catalogue_ids = index.catalogue.ids().tolist()

    assert neighbours == [("ROCKET.BMP", pytest.approx(0.0, abs=1e-6))]
    assert ids_in_index_file(index_file(folder)) == catalogue_ids


def _another_index_file(tmp_path: Path, photo_folder_template: Path) -> Path:
    other = write_photo_folder(tmp_path / "other", photo_folder_template)
    (other / "chelsea.jpeg").unlink()
    with open_index(other) as index:
        index.update(colour_layout_embedder())
    return index_file(other)


STALE_CASES = ("foreign file", "vectors changed behind its back", "garbage", "truncated")


@pytest.mark.parametrize("case", STALE_CASES)
def test_a_stale_or_foreign_index_file_is_rebuilt_not_used(
    tmp_path: Path, photo_folder_template: Path, case: str
) -> None:
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    with open_index(folder) as index:
        index.update(colour_layout_embedder())
        ids = sorted(index.catalogue.ids().tolist())
        chelsea = int(index.catalogue.ids_of(["chelsea.jpeg"])[0])
    if case == "foreign file":  # another folder's index, valid in itself, lacks chelsea
        shutil.copy(_another_index_file(tmp_path, photo_folder_template), index_file(folder))
    elif case == "vectors changed behind its back":  # e.g. a crash, or an older version
        with sqlite3.connect(default_index_path(folder)) as connection:
            connection.execute("DELETE FROM vectors WHERE id = ?", (chelsea,))
        ids.remove(chelsea)
    elif case == "garbage":
        index_file(folder).write_bytes(b"not an index at all")
    else:
        data = index_file(folder).read_bytes()
        index_file(folder).write_bytes(data[: len(data) // 2])

    with open_index(folder) as index:
        distances, found = index.store.search(np.zeros((1, 48), np.float32), k=len(ids))

    assert sorted(found[0].tolist()) == ids
    assert ids_in_index_file(index_file(folder)) == ids
    info = ann.read_index_info(index_file(folder))
    with open_index(folder) as index:
        assert info.stamp == index.store.stamp()


def test_index_file_is_replaced_atomically(
    tmp_path: Path, photo_folder_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    with open_index(folder) as index:
        index.update(colour_layout_embedder())
    before = index_file(folder).read_bytes()

    def half_written(index: object, path: str) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", half_written)
    shutil.copy(folder / "Coffee.PNG", folder / "new.png")
    with open_index(folder) as index, pytest.raises(OSError, match="disk full"):
        index.update(colour_layout_embedder())

    assert index_file(folder).read_bytes() == before
    assert sorted(p.name for p in index_file(folder).parent.iterdir()) == [
        "index.faiss",
        "index.sqlite",
    ]


@pytest.mark.parametrize(
    ("mode", "kind"), [("auto", "exact"), ("exact", "exact"), ("approximate", "approximate")]
)
def test_ann_option_picks_the_index_kind_and_is_remembered(
    tmp_path: Path,
    photo_folder_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    kind: str,
) -> None:
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    monkeypatch.setattr(retrieval_service, "load_embedder", lambda *_: colour_layout_embedder())
    runner = CliRunner()

    indexed = runner.invoke(app, ["index", str(folder), "--ann", mode])
    searched = runner.invoke(
        app, ["search", str(folder / "ROCKET.BMP"), "--database", str(folder), "--json"]
    )

    assert indexed.exit_code == 0, indexed.stderr
    assert ann.read_index_info(index_file(folder)).kind == kind
    assert searched.exit_code == 0, searched.stderr
    assert ann.read_index_info(index_file(folder)).kind == kind  # search kept the mode
    first = json.loads(searched.stdout)["results"][0]
    assert Path(first["path"]).name == "ROCKET.BMP" and first["distance"] < 1e-3


def test_unknown_ann_mode_is_one_line_naming_the_choices(
    tmp_path: Path, photo_folder_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    monkeypatch.setattr(retrieval_service, "load_embedder", lambda *_: colour_layout_embedder())

    result = CliRunner().invoke(app, ["index", str(folder), "--ann", "fast"])

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --ann fast: choose one of auto, exact, approximate."
    ]


def test_auto_switches_to_approximate_at_the_threshold_with_hysteresis() -> None:
    below, at = ann.APPROXIMATE_FROM - 1, ann.APPROXIMATE_FROM
    assert ann.wanted_kind("auto", below) == "exact"
    assert ann.wanted_kind("auto", at) == "approximate"
    assert ann.wanted_kind("auto", below, current_kind="approximate") == "approximate"
    assert ann.wanted_kind("auto", at // 2 - 1, current_kind="approximate") == "exact"
    assert ann.wanted_kind("approximate", 3) == "approximate"


def test_an_ann_mode_remembered_by_an_older_index_is_kept(
    tmp_path: Path, photo_folder_template: Path
) -> None:
    """Indexes before the stores package kept `--ann` under the catalogue's own "ann" key."""
    folder = write_photo_folder(tmp_path / "photos", photo_folder_template)
    with open_index(folder, "approximate") as index:
        index.update(colour_layout_embedder())
    with sqlite3.connect(default_index_path(folder)) as connection:
        connection.execute("UPDATE settings SET key = 'ann' WHERE key = 'faiss.ann'")
    index_file(folder).unlink()

    with open_index(folder) as index:
        index.store.search(np.zeros((1, 48), np.float32), k=1)
        assert index.store.ann_mode() == "approximate"
    assert ann.read_index_info(index_file(folder)).kind == "approximate"
