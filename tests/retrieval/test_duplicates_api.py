"""The duplicates API refuses what a stale page or a made-up request could do to the files."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_retrieval_duplicates import planted_folder  # noqa: F401 (a fixture)

from foldervision.retrieval.service import RetrievalService
from foldervision.retrieval.settings import IndexSettings
from foldervision.web.app import create_app


def test_only_listed_groups_move_and_only_this_servers_journals_undo(
    planted_folder: tuple[Path, list[list[str]]],  # noqa: F811
    embedder,
    tmp_path: Path,
) -> None:
    folder, planted = planted_folder
    settings = IndexSettings(folder, index_path=tmp_path / "index.sqlite")
    service = RetrievalService.open(settings, embedder=embedder)
    service.update()
    with service, TestClient(create_app(service, thumbs=tmp_path / "thumbs")) as client:
        listed = client.get("/api/duplicates").json()
        assert [[f["path"] for f in group["files"]] for group in listed["groups"]] == planted
        assert listed["destination"] == str(folder.resolve().parent / "album-duplicates")
        destination = str(tmp_path / "out")
        group = {"files": planted[2], "keep": "coffee.jpg"}

        made_up = {"files": ["coffee.jpg", "rocket.jpg"], "keep": "coffee.jpg"}
        stale = client.post("/api/duplicates/move", json={"destination": destination,
                                                           "groups": [made_up]})  # fmt: skip
        assert stale.status_code == 409 and "reload" in stale.json()["error"]
        relative = client.post("/api/duplicates/move", json={"destination": "out",
                                                              "groups": [group]})  # fmt: skip
        assert relative.status_code == 400
        inside = client.post("/api/duplicates/move", json={"destination": str(folder / "dups"),
                                                            "groups": [group]})  # fmt: skip
        assert inside.status_code == 400 and "inside the folder" in inside.json()["error"]
        assert client.post("/api/duplicates/undo", json={"journal": "/etc/passwd"}).status_code \
            == 404  # fmt: skip

        moved = client.post("/api/duplicates/move", json={"destination": destination,
                                                          "groups": [group]})  # fmt: skip
        assert moved.status_code == 200, moved.text
        assert moved.json()["moved"] == [
            {"from": "coffee bright.jpg", "to": str(tmp_path / "out" / "coffee bright.jpg")}
        ]
        assert not (folder / "coffee bright.jpg").exists()
        undone = client.post("/api/duplicates/undo", json={"journal": moved.json()["journal"]})
        assert undone.json() == {"moved_back": 1} and (folder / "coffee bright.jpg").exists()
