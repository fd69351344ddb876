"""Pair verification on real photos: the same photo edited hard matches, shared overlays do not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from test_retrieval_duplicates import photo, screenshot

from foldervision.retrieval import verify
from foldervision.retrieval.duplicates import DuplicateSettings, PairEvidence


def saved(image: Image.Image, tmp_path: Path, name: str, **options: int) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def accepts(evidence: verify.Evidence) -> bool:
    pair = PairEvidence(1, 2, 0.5, float("nan"), evidence.inliers, evidence.matches,
                        evidence.correlation)  # fmt: skip
    return DuplicateSettings().accepts(pair)


def verdict(first: Path, second: Path) -> tuple[bool, verify.Evidence]:
    """The verdict on all the evidence; the quick comparison `duplicates` makes with the
    settings that decide (no mirror tried once a fit as it is is enough) must agree."""
    evidence = verify.compare(verify.read_picture(first), verify.read_picture(second))
    settings = DuplicateSettings()
    quick = verify.compare(verify.read_picture(first), verify.read_picture(second),
                           settings.min_inliers, settings.min_inlier_ratio,
                           settings.min_correlation)  # fmt: skip
    assert accepts(quick) == accepts(evidence), (quick, evidence)
    return accepts(evidence), evidence


EDITS = {
    "mirrored": lambda image: ImageOps.mirror(image),
    "turned 90": lambda image: image.transpose(Image.Transpose.ROTATE_90),
    "turned 180": lambda image: image.transpose(Image.Transpose.ROTATE_180),
    "grey": lambda image: image.convert("L"),
    "cropped to 72%": lambda image: image.crop(
        (15, 20, 15 + round(image.width * 0.72), 20 + round(image.height * 0.72))
    ),
    "thumbnail": lambda image: image.resize((image.width // 2, image.height // 2)),
    "screenshot": screenshot,
}


@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_hard_copies_of_a_photo_are_verified(edit: str, name: str, tmp_path: Path) -> None:
    original = photo(name, 320)
    first = saved(original, tmp_path, "original.jpg", quality=92)
    second = saved(EDITS[edit](original), tmp_path, "copy.png")

    accepted, evidence = verdict(first, second)

    assert accepted, evidence
    assert evidence.mirrored == (edit == "mirrored")


@pytest.mark.parametrize("edit", ["grey", "turned 90", "mirrored"])
def test_a_copy_that_matches_as_it_is_never_needs_the_mirror_keypoints(
    edit: str, tmp_path: Path
) -> None:
    original = photo("astronaut", 320)
    first = verify.read_picture(saved(original, tmp_path, "original.jpg", quality=92))
    second = verify.read_picture(saved(EDITS[edit](original), tmp_path, "copy.png"))
    settings = DuplicateSettings()

    evidence = verify.compare(first, second, settings.min_inliers, settings.min_inlier_ratio,
                              settings.min_correlation)  # fmt: skip

    assert accepts(evidence), evidence
    assert evidence.mirrored == second.has_mirrored_features == (edit == "mirrored")


def test_heavy_jpeg_compression_is_verified(tmp_path: Path) -> None:
    original = photo("chelsea", 320)
    first = saved(original, tmp_path, "original.jpg", quality=92)
    second = saved(original, tmp_path, "q12.jpg", quality=12)
    assert verdict(first, second)[0]


def test_different_photos_sharing_a_watermark_or_a_phone_frame_are_not(tmp_path: Path) -> None:
    marked = []
    for name in ("rocket", "hubble_deep_field", "astronaut", "chelsea"):
        image = photo(name, 240)
        draw = ImageDraw.Draw(image)
        draw.text((10, image.height // 2), "(c) PhotoStudio 2024 - all rights", fill="white")
        draw.rectangle((image.width - 30, image.height - 30, image.width - 5, image.height - 5),
                       fill="white")  # fmt: skip
        marked.append(saved(image, tmp_path, f"{name} marked.jpg", quality=92))
    framed = [saved(screenshot(photo(name)), tmp_path, f"{name} screen.png")
              for name in ("coffee", "chelsea", "astronaut")]  # fmt: skip

    for files in (marked, framed):
        for first, second in zip(files, files[1:]):
            accepted, evidence = verdict(first, second)
            assert not accepted, (first.name, second.name, evidence)


def test_content_box_finds_the_photo_inside_a_screenshot() -> None:
    image = photo("coffee")
    grey = np.asarray(screenshot(image).convert("L"))

    top, bottom, left, right = verify.content_box(grey)

    assert (top, left) == (40, 15)
    assert (bottom - top, right - left) == (image.height, image.width)
    plain = np.asarray(image.convert("L"))
    assert verify.content_box(plain) == (0, plain.shape[0], 0, plain.shape[1])


def test_unreadable_files_give_no_picture_and_no_signature(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    (tmp_path / "tiny.png").write_bytes(buffer.getvalue())
    assert verify.read_picture(tmp_path / "broken.jpg") is None
    assert verify.signature_of_file(tmp_path / "broken.jpg") is None
    assert verify.read_picture(tmp_path / "tiny.png") is None  # nothing to find keypoints in
    assert verify.signature_of_file(tmp_path / "tiny.png") is None  # one colour: no contrast


@pytest.mark.parametrize("least_share", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_ransac_draws_find_an_acceptable_fit_but_for_the_stated_chance(least_share: float) -> None:
    draws = verify.ransac_draws(least_share)

    # Each draw takes two matches; both are inliers with chance least_share^2 at worst.
    missed = (1 - least_share**2) ** draws
    assert missed <= verify.MISSED_FIT_CHANCE or draws == verify.MAX_RANSAC_DRAWS
    assert (1 - least_share**2) ** (draws - 1) > verify.MISSED_FIT_CHANCE or draws == 1
    assert verify.ransac_draws(0.0) == verify.MAX_RANSAC_DRAWS
    assert verify.ransac_draws(DuplicateSettings().min_inlier_ratio) < verify.MAX_RANSAC_DRAWS
