"""Leave-one-out P@k and mAP against answers worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_embedders import green_angle_embedder
from typer.testing import CliRunner

from foldervision.cli import app
from foldervision.images import save_image_atomic
from foldervision.retrieval import service as retrieval_service
from foldervision.retrieval.evaluate import leave_one_out_scores

# Four points on a line, classes A A B B. Nearest others, by hand:
#   a0 (0): a1, b0, b1 -> relevant at rank 1       P@1 1, P@2 1/2, AP 1
#   a1 (1): a0, b0, b1 -> relevant at rank 1       P@1 1, P@2 1/2, AP 1
#   b0 (3): a1, a0, b1 -> relevant at rank 3       P@1 0, P@2 0,   AP 1/3
#   b1 (10): b0, a1, a0 -> relevant at rank 1      P@1 1, P@2 1/2, AP 1
POINTS = np.array([[0.0], [1.0], [3.0], [10.0]])
LABELS = np.array([0, 0, 1, 1])
EXPECTED_PRECISION_AT_1 = 0.75
EXPECTED_PRECISION_AT_2 = 0.375
EXPECTED_MEAN_AVERAGE_PRECISION = (1 + 1 + 1 / 3 + 1) / 4


def test_leave_one_out_scores_match_the_hand_computed_answer() -> None:
    at_1 = leave_one_out_scores(POINTS, LABELS, k=1)
    at_2 = leave_one_out_scores(POINTS, LABELS, k=2)

    assert at_1.precision_at_k == pytest.approx(EXPECTED_PRECISION_AT_1)
    assert at_2.precision_at_k == pytest.approx(EXPECTED_PRECISION_AT_2)
    assert at_1.mean_average_precision == pytest.approx(EXPECTED_MEAN_AVERAGE_PRECISION)
    assert at_1.queries == 4


def test_every_report_carries_p_at_1_p_at_4_and_the_n_s_score() -> None:
    # By hand, among each query's 3 others: a0 1 relevant, a1 1, b0 1, b1 1 -> P@4 = 4/16
    # (a fourth rank that does not exist is a miss, as in UKBench); N-S = 1 relevant in 4.
    scores = leave_one_out_scores(POINTS, LABELS, k=2)

    assert scores.precision_at_1 == pytest.approx(EXPECTED_PRECISION_AT_1)
    assert scores.precision_at_4 == pytest.approx(0.25)
    assert scores.ns_score == pytest.approx(1.0)
    assert scores.precision_at_k == pytest.approx(EXPECTED_PRECISION_AT_2)


def test_a_query_never_retrieves_itself() -> None:
    identical_pairs = np.array([[0.0], [0.0], [5.0], [5.0]])
    scores = leave_one_out_scores(identical_pairs, np.array([0, 1, 0, 1]), k=1)
    assert scores.precision_at_k == 0.0  # each query's twin belongs to the other class


def test_evaluate_retrieval_cli_reports_the_known_answer_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Solid colours (255, g, 0): the unit vectors' angles atan(g/255) are 0, 4.5, 13.2 and 45
    # degrees, ordered like POINTS above, so the answer is the same.
    folder = tmp_path / "labelled"
    for class_name, name, green in [("a", "a0", 0), ("a", "a1", 20), ("b", "b0", 60),
                                    ("b", "b1", 255)]:  # fmt: skip
        pixels = np.zeros((8, 8, 3), np.uint8)
        pixels[..., 0], pixels[..., 1] = 255, green
        save_image_atomic(pixels, folder / class_name / f"{name}.png")
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    monkeypatch.setattr(
        retrieval_service, "load_embedder", lambda *arguments: green_angle_embedder()
    )

    result = CliRunner().invoke(app, ["evaluate-retrieval", str(folder), "-k", "2", "--json"])

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["k"] == 2 and report["queries"] == 4
    assert report["precision_at_k"] == pytest.approx(EXPECTED_PRECISION_AT_2)
    assert report["mean_average_precision"] == pytest.approx(EXPECTED_MEAN_AVERAGE_PRECISION)
    assert report["precision_at_1"] == pytest.approx(EXPECTED_PRECISION_AT_1)
    assert report["ns_score"] == pytest.approx(1.0)
    assert report["class_names"] == ["a", "b"]
    assert [Path(skip["path"]).name for skip in report["skipped"]] == ["broken.png"]
    assert "broken.png" in result.stderr
