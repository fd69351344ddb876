"""`foldervision duplicates`: planted groups of edited real photos are found, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from typer.testing import CliRunner
from user_process import run_cli

from foldervision.cli import app
from foldervision.retrieval.duplicates import (
    DuplicateSettings,
    PairEvidence,
    group_pairs,
    signature_candidates,
)
from foldervision.retrieval.embedder import Embedder
from foldervision.retrieval.stores import STORES

SIZE_OPTION = ["--image-size", "96"]


def photo(name: str, side: int = 200) -> Image.Image:
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    image.thumbnail((side, side))
    return image


def with_caption(image: Image.Image) -> Image.Image:
    framed = Image.new("RGB", (image.width, image.height + 24), "white")
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((4, image.height + 4), "holiday copy", fill="black")
    return framed


def screenshot(image: Image.Image) -> Image.Image:
    """The photo on a phone screen: dark margins, a status bar with the time, three buttons."""
    screen = Image.new("RGB", (image.width + 30, image.height + 90), (18, 18, 18))
    draw = ImageDraw.Draw(screen)
    draw.text((6, 4), "12:34", fill="white")
    draw.rectangle((screen.width - 30, 5, screen.width - 8, 14), outline="white", width=2)
    screen.paste(image, (15, 40))
    for centre in (screen.width // 4, screen.width // 2, 3 * screen.width // 4):
        draw.ellipse((centre - 6, screen.height - 30, centre + 6, screen.height - 18),
                     outline="white")  # fmt: skip
    return screen


@pytest.fixture
def planted_folder(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    """Three groups of edited copies of skimage photos, plus two photos with no copy."""
    folder = tmp_path / "album"
    (folder / "copies").mkdir(parents=True)
    astronaut, chelsea, coffee = photo("astronaut"), photo("chelsea"), photo("coffee")
    astronaut.save(folder / "astronaut.jpg", quality=90)
    astronaut.resize((astronaut.width // 2, astronaut.height // 2)).save(
        folder / "copies" / "astronaut small.jpg", quality=90
    )
    with_caption(astronaut).save(folder / "copies" / "astronaut captioned.jpg", quality=90)
    chelsea.save(folder / "chelsea.jpg", quality=90)
    chelsea.crop((6, 6, chelsea.width - 6, chelsea.height - 6)).save(folder / "chelsea crop.png")
    chelsea.save(folder / "copies" / "chelsea.webp", quality=80)
    coffee.save(folder / "coffee.jpg", quality=90)
    ImageEnhance.Brightness(coffee).enhance(1.3).save(folder / "coffee bright.jpg", quality=40)
    photo("rocket").save(folder / "rocket.jpg", quality=90)
    photo("camera").save(folder / "camera.png")
    groups = [
        ["astronaut.jpg", "copies/astronaut captioned.jpg", "copies/astronaut small.jpg"],
        ["chelsea crop.png", "chelsea.jpg", "copies/chelsea.webp"],
        ["coffee bright.jpg", "coffee.jpg"],
    ]
    return folder, groups


@pytest.fixture
def hard_folder(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    """Copies the global vectors alone rank far away: mirrored, turned, grey, a screenshot, a
    72% crop, JPEG quality 12; and two different photos under one photographer's watermark."""
    folder = tmp_path / "hard"
    folder.mkdir()
    astronaut, chelsea, coffee = photo("astronaut", 320), photo("chelsea", 320), photo("coffee")
    astronaut.save(folder / "astronaut.jpg", quality=92)
    ImageOps.mirror(astronaut).save(folder / "astronaut mirrored.jpg", quality=92)
    astronaut.transpose(Image.Transpose.ROTATE_90).save(folder / "astronaut 90.jpg", quality=92)
    chelsea.save(folder / "chelsea.jpg", quality=92)
    chelsea.convert("L").save(folder / "chelsea grey.jpg", quality=92)
    width, height = chelsea.size
    chelsea.crop((20, 10, 20 + round(width * 0.72), 10 + round(height * 0.72))).save(
        folder / "chelsea crop.jpg", quality=92
    )
    coffee.save(folder / "coffee.jpg", quality=92)
    screenshot(coffee).save(folder / "coffee screenshot.png")
    coffee.save(folder / "coffee q12.jpg", quality=12)
    for name in ("rocket", "hubble_deep_field"):
        image = photo(name, 240)
        ImageDraw.Draw(image).text((10, image.height // 2), "(c) PhotoStudio 2024", fill="white")
        image.save(folder / f"{name} watermarked.jpg", quality=92)
    groups = [
        ["astronaut 90.jpg", "astronaut mirrored.jpg", "astronaut.jpg"],
        ["chelsea crop.jpg", "chelsea grey.jpg", "chelsea.jpg"],
        ["coffee q12.jpg", "coffee screenshot.png", "coffee.jpg"],
    ]
    return folder, groups


def relative(paths: list[str], folder: Path) -> list[str]:
    return [Path(path).relative_to(folder).as_posix() for path in paths]


@pytest.mark.parametrize("store", STORES.names())
def test_duplicates_json_lists_exactly_the_planted_groups(
    planted_folder: tuple[Path, list[list[str]]], store: str, tmp_path: Path
) -> None:
    """As a user runs it: a fresh process, through every vector store."""
    folder, planted = planted_folder
    location = f"milvus:{tmp_path / 'vectors.db'}" if store == "milvus" else store

    result = run_cli("duplicates", folder, "--json", "--store", location, *SIZE_OPTION)

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(line) == {"files", "distances", "keep", "why"} for line in lines)
    assert [relative(line["files"], folder) for line in lines] == planted
    for line in lines:
        assert len(line["distances"]) == len(line["files"]) and line["distances"][0] == 0.0
        assert all(0.0 <= distance < 1.0 for distance in line["distances"])
        assert line["keep"] in line["files"] and line["why"]
    assert "3 groups" in result.stderr


def test_hard_copies_are_found_and_a_shared_watermark_is_not_a_duplicate(
    hard_folder: tuple[Path, list[list[str]]], cli_uses_session_embedder: Embedder
) -> None:
    folder, planted = hard_folder

    result = CliRunner().invoke(app, ["duplicates", str(folder), "--json", *SIZE_OPTION])

    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [relative(line["files"], folder) for line in lines] == planted


def test_duplicates_text_output_marks_the_keeper_and_draws_a_sheet(
    planted_folder: tuple[Path, list[list[str]]],
    cli_uses_session_embedder: Embedder,
    tmp_path: Path,
) -> None:
    folder, planted = planted_folder
    sheet = tmp_path / "duplicates.png"

    result = CliRunner().invoke(
        app, ["duplicates", str(folder), "--sheet", str(sheet), *SIZE_OPTION]
    )

    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [int(group) for group, *_ in rows] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert relative([row[2] for row in rows], folder) == [p for g in planted for p in g]
    keepers = {row[0]: relative([row[2]], folder)[0] for row in rows if row[3] == "keep"}
    # The most photo pixels win (the caption bar of the 200 x 224 copy is no photo, so the
    # 200 x 200 original wins); among equal ones the less compressed JPEG (coffee at quality
    # 90, not 40); formats are not compared, so the shorter path decides.
    assert keepers == {"1": "astronaut.jpg", "2": "chelsea.jpg", "3": "coffee.jpg"}
    assert {row[3] for row in rows} == {"keep", "duplicate"}
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.height > image.width / 4  # 3 rows


def test_a_threshold_of_zero_finds_only_byte_identical_pictures(
    planted_folder: tuple[Path, list[list[str]]], cli_uses_session_embedder: Embedder
) -> None:
    folder, _ = planted_folder
    (folder / "rocket again.jpg").write_bytes((folder / "rocket.jpg").read_bytes())

    result = CliRunner().invoke(
        app, ["duplicates", str(folder), "--json", "--threshold", "0", *SIZE_OPTION]
    )

    assert result.exit_code == 0, result.stderr
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert relative(line["files"], folder) == ["rocket again.jpg", "rocket.jpg"]


def test_group_pairs_joins_chains_with_union_find() -> None:
    pairs = [(1, 2, 0.1), (2, 3, 0.2), (7, 8, 0.1), (3, 1, 0.3)]
    assert sorted(group_pairs(pairs)) == [[1, 2, 3], [7, 8]]
    assert group_pairs([]) == []


def test_settings_bound_the_distance_and_ask_the_content_above_the_sure_distance() -> None:
    settings = DuplicateSettings(threshold=0.9, sure_distance=0.1, min_inliers=5,
                                 min_inlier_ratio=0.3, min_correlation=0.8)  # fmt: skip
    matching = PairEvidence(1, 2, 0.5, float("nan"), inliers=20, matches=30, correlation=0.95)

    assert settings.accepts(matching)
    assert not settings.accepts(PairEvidence(1, 2, 0.95, 0.9, 20, 30, 0.95))  # too far
    assert settings.accepts(PairEvidence(1, 2, 0.05, 0.9))  # sure, nothing else asked
    assert not settings.accepts(PairEvidence(1, 2, 0.5, 0.9, 4, 5, 0.95))  # too few inliers
    assert not settings.accepts(PairEvidence(1, 2, 0.5, 0.9, 8, 100, 0.95))  # chance matches
    assert not settings.accepts(PairEvidence(1, 2, 0.5, 0.9, 20, 30, 0.6))  # pixels differ
    with pytest.raises(ValueError, match="--threshold must be at least 0"):
        DuplicateSettings(threshold=-1)


def test_signature_candidates_propose_turned_and_mirrored_copies(tmp_path: Path) -> None:
    import numpy as np

    from foldervision.retrieval.verify import signature

    names = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick")
    greys = [np.asarray(photo(name).convert("L")) for name in names]
    copies = [np.rot90(greys[0]), greys[1][:, ::-1], np.rot90(greys[2], 2), np.rot90(greys[3], 3)]
    signatures = np.stack([signature(grey) for grey in greys + copies]).astype(np.float32)
    ids = np.arange(100, 100 + len(signatures))

    pairs = signature_candidates(ids, signatures)

    for number in range(len(copies)):
        assert (100 + number, 100 + len(greys) + number) in pairs


def test_signature_lists_of_a_large_collection_still_propose_turned_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above SIGNATURE_LISTS_FROM the signatures are searched through inverted lists: a copy
    turned or mirrored must still be proposed, as the exact search proposes it."""
    import numpy as np

    import foldervision.retrieval.duplicates as duplicates
    from foldervision.retrieval.verify import signature

    names = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick")
    random = np.random.default_rng(7)
    greys = []
    for name in names:  # 150 views of each photo: different crops are different pictures
        grey = np.asarray(photo(name, side=400).convert("L"))
        for _ in range(150):
            side = int(random.integers(60, min(grey.shape)))
            top = int(random.integers(0, grey.shape[0] - side + 1))
            left = int(random.integers(0, grey.shape[1] - side + 1))
            greys.append(grey[top : top + side, left : left + side + int(random.integers(0, 20))])
    copies = [np.rot90(greys[0]), greys[200][:, ::-1], np.rot90(greys[400], 2),
              np.rot90(greys[600], 3)]  # fmt: skip
    signatures = np.stack([signature(grey) for grey in greys + copies]).astype(np.float32)
    ids = np.arange(len(signatures))
    monkeypatch.setattr(duplicates, "SIGNATURE_LISTS_FROM", 500)

    pairs = signature_candidates(ids, signatures)

    assert duplicates._signature_index(signatures).nlist > 1
    for original, copy in zip((0, 200, 400, 600), range(len(greys), len(signatures))):
        assert (original, copy) in pairs


def test_signatures_are_decoded_once_until_a_file_changes(
    planted_folder: tuple[Path, list[list[str]]],
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from foldervision.retrieval import verify
    from foldervision.retrieval.duplicates import read_signatures
    from foldervision.retrieval.service import RetrievalService
    from foldervision.retrieval.settings import IndexSettings

    folder, _ = planted_folder
    settings = IndexSettings(folder, index_path=tmp_path / "index.sqlite")
    with RetrievalService.open(settings, embedder=embedder) as service:
        service.update()
        ids = service.index.store.ids()
        first_ids, first = read_signatures(service.index, ids)
        decoded: list[Path] = []
        real_signature_of_file = verify.signature_of_file

        def counting(path: Path):
            decoded.append(Path(path))
            return real_signature_of_file(path)

        monkeypatch.setattr(verify, "signature_of_file", counting)
        again_ids, again = read_signatures(service.index, ids)
        assert decoded == [] and np.array_equal(again_ids, first_ids)
        assert np.array_equal(again, first)

        photo("rocket").rotate(90).save(folder / "rocket.jpg", quality=90)
        service.update()
        read_signatures(service.index, service.index.store.ids())
        assert decoded == [folder / "rocket.jpg"]
    assert (tmp_path / "index.signatures.sqlite").is_file()


def test_a_burst_of_copies_is_grouped_whole_with_fewer_comparisons(
    embedder: Embedder, tmp_path: Path
) -> None:
    """Pairs whose files are already joined are not compared, and the groups do not change."""
    from foldervision.retrieval.duplicates import find_duplicates, search_pairs
    from foldervision.retrieval.service import RetrievalService
    from foldervision.retrieval.settings import IndexSettings

    folder = tmp_path / "burst"
    folder.mkdir()
    astronaut = photo("astronaut", 240)
    for number, side in enumerate((240, 220, 200, 180, 160, 150, 140, 130)):
        astronaut.resize((side, side)).save(folder / f"astronaut {number}.jpg", quality=88)
    photo("coffee").save(folder / "coffee.jpg", quality=90)
    photo("rocket").save(folder / "rocket.jpg", quality=90)
    settings = DuplicateSettings()
    with RetrievalService.open(IndexSettings(folder, index_path=tmp_path / "i.sqlite"),
                               embedder=embedder) as service:  # fmt: skip
        service.update()
        every_pair = search_pairs(service.index, settings, check_all=True)
        joined_once = search_pairs(service.index, settings)
        groups = find_duplicates(service.index, settings)

    worth = [pair for pair in every_pair.pairs if settings.worth_checking(pair)]
    assert len(worth) >= 20  # the eight copies propose most of their 28 pairs
    assert joined_once.checks < len(worth) // 2
    every_group = group_pairs((p.first, p.second, 0) for p in every_pair.accepted())
    assert group_pairs((p.first, p.second, 0) for p in joined_once.accepted()) == every_group
    assert [sorted(group.files) for group in groups] == [
        [f"astronaut {number}.jpg" for number in range(8)]
    ]


def test_a_picture_read_again_keeps_its_keypoints_and_its_verdicts(
    hard_folder: tuple[Path, list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache too small for two pictures reads files again, but never searches a picture's
    keypoints twice, and every pair compares as when both pictures are read afresh."""
    from concurrent.futures import ThreadPoolExecutor
    from itertools import combinations

    import foldervision.retrieval.duplicates as duplicates
    import foldervision.retrieval.verify as verify

    folder, _ = hard_folder
    paths = dict(enumerate(sorted(path.name for path in folder.iterdir())))
    fresh = {
        pair: verify.compare(
            verify.read_picture(folder / paths[pair[0]]),
            verify.read_picture(folder / paths[pair[1]]),
        )
        for pair in combinations(paths, 2)
    }
    searches: list[int] = []
    find_features = verify._features
    monkeypatch.setattr(verify, "_features", lambda grey: searches.append(1) or find_features(grey))
    monkeypatch.setattr(duplicates, "CHECK_BATCH", 1)  # keep no more than two pictures
    cache = duplicates.PictureCache(folder, paths, max_bytes=0, keypoint_bytes=10**9)

    with ThreadPoolExecutor(1) as pool:
        for first, second in fresh:
            cache.load([first, second], pool)
            pair = cache.compare(PairEvidence(first, second, 0.5, 1.0))
            evidence = verify.Evidence(pair.inliers, pair.matches, pair.correlation, pair.mirrored)
            assert evidence == fresh[(first, second)], (paths[first], paths[second])

    assert cache.reads > 2 * len(paths)
    assert len(searches) <= 2 * len(paths)  # a picture's keypoints and its mirror's, once each


def test_proposals_neither_close_nor_alike_are_not_checked() -> None:
    settings = DuplicateSettings(threshold=0.9, check_distance=0.6, check_similarity=0.9)
    evidence = {"inliers": 30, "matches": 40, "correlation": 0.95}

    assert settings.worth_checking(PairEvidence(1, 2, 0.55, 0.1))  # close vectors
    assert settings.worth_checking(PairEvidence(1, 2, 0.85, 0.95))  # alike signatures
    assert not settings.worth_checking(PairEvidence(1, 2, 0.85, 0.5))
    assert not settings.worth_checking(PairEvidence(1, 2, 0.85, float("nan")))
    assert not settings.accepts(PairEvidence(1, 2, 0.85, 0.5, **evidence))
    assert settings.accepts(PairEvidence(1, 2, 0.85, 0.95, **evidence))
