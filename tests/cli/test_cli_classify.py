"""The `foldervision` command as a user runs it: outputs, JSON, one-line errors, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner
from user_process import run_cli

from foldervision.cli import app
from foldervision.cli.app import join_multi_value_options


@pytest.fixture(scope="module")
def cli_run(sample_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "lenet"
    result = run_cli(
        "train",
        sample_digits / "train",
        "--model",
        "lenet",
        "--epochs",
        "2",
        "--seed",
        "1",
        "--out",
        out,
        "--test",
        sample_digits / "test",
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_prints_the_run_folder_and_accuracy(cli_run, sample_digits):
    out, result = cli_run
    assert result.stdout.strip() == str(out)
    assert "validation accuracy" in result.stderr
    assert "recipe: digits (--model lenet; median 28x28 px, grey, 200 images/class)" in (
        result.stderr
    )
    assert "lenet: test accuracy" in result.stderr and "on 150 images" in result.stderr
    assert list(json.loads((out / "evaluations.json").read_text())) == [
        str((sample_digits / "test").resolve())
    ]


def test_evaluate_json(cli_run, sample_digits):
    out, _ = cli_run
    result = run_cli("evaluate", out, sample_digits / "test", "--json")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    matrix = evaluation["confusion_matrix"]
    assert evaluation["size"] == 150 == sum(map(sum, matrix))
    assert evaluation["accuracy"] == sum(matrix[i][i] for i in range(3)) / 150
    assert evaluation["accuracy"] > 0.9, "two LeNet epochs on real digits are far above chance"


def test_predict_json_one_object_per_line_and_bad_file_reported(cli_run, sample_digits, tmp_path):
    out, _ = cli_run
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    good = sorted((sample_digits / "test" / "1").glob("*.png"))[:2]
    result = run_cli("predict", out, *good, broken, "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(path) for path in good]
    assert all(set(line["probabilities"]) == {"0", "1", "2"} for line in lines)
    assert "broken.jpg" in result.stderr


def test_predict_prints_top_classes_with_probabilities(cli_run, sample_digits):
    out, _ = cli_run
    images = sorted((sample_digits / "test" / "2").glob("*.png"))[:3]
    plain = run_cli("predict", out, *images)
    as_json = run_cli("predict", out, *images, "--json")
    assert plain.returncode == 0 and as_json.returncode == 0, plain.stderr + as_json.stderr
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    lines = plain.stdout.splitlines()
    assert len(lines) == len(objects) == 3
    for line, prediction in zip(lines, objects):
        path, label, confidence, top = line.split("\t")
        assert (path, label) == (prediction["path"], prediction["label"])
        ranked = sorted(prediction["probabilities"].items(), key=lambda item: -item[1])
        assert [(item["label"], item["probability"]) for item in prediction["top"]] == ranked
        assert top == ", ".join(f"{name} ({value:.4f})" for name, value in ranked)
        assert top.startswith(f"{label} ({confidence})")


def test_predict_top_n_is_capped_at_the_number_of_classes(cli_run, sample_digits):
    out, _ = cli_run
    image = sorted((sample_digits / "test" / "0").glob("*.png"))[0]
    one = run_cli("predict", out, image, "--top", "1").stdout.strip().split("\t")[3]
    many = json.loads(run_cli("predict", out, image, "--top", "10", "--json").stdout)["top"]
    assert one.count("(") == 1 and one.split(" (")[0] == many[0]["label"]
    assert sorted(item["label"] for item in many) == ["0", "1", "2"]
    refused = run_cli("predict", out, image, "--top", "0")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: --top must be at least 1 (got 0)."
    )


def test_evaluate_prints_per_class_figures_and_writes_the_confusion_matrix(cli_run, sample_digits):
    out, _ = cli_run
    as_json = run_cli("evaluate", out, sample_digits / "test", "--json")
    plain = run_cli("evaluate", out, sample_digits / "test")
    assert plain.returncode == 0 and as_json.returncode == 0, plain.stderr + as_json.stderr
    evaluation = json.loads(as_json.stdout)

    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    header = rows.index(["class", "precision", "recall", "f1", "support"])
    for name, precision, recall, f1, support in rows[header + 1 : header + 4]:
        figures = evaluation["per_class"][name]
        assert float(precision) == pytest.approx(figures["precision"], abs=5e-5)
        assert float(recall) == pytest.approx(figures["recall"], abs=5e-5)
        assert float(f1) == pytest.approx(figures["f1"], abs=5e-5)
        assert int(support) == figures["support"] == 50
    matrix_header = rows.index(["", "0", "1", "2"])
    matrix = [[int(count) for count in row[1:]] for row in rows[matrix_header + 1 :]]
    assert matrix == evaluation["confusion_matrix"]

    plot = Path(evaluation["confusion_matrix_plot"])
    assert plot.parent == out / "evaluations" and plot.name.endswith("_confusion_matrix.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"confusion matrix: {plot}" in plain.stderr and str(plot) not in plain.stdout
    recorded = json.loads((out / "evaluations.json").read_text())
    assert recorded[evaluation["data"]]["confusion_matrix_plot"] == str(plot)


def test_evaluate_writes_the_confusion_matrix_where_asked(cli_run, sample_digits, tmp_path):
    out, _ = cli_run
    target = tmp_path / "plots" / "test_matrix.png"
    result = run_cli(
        "evaluate", out / "model.keras", sample_digits / "test", "--confusion-matrix", target
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_table(cli_run, sample_digits, tmp_path):
    """One row per run, from metrics.json and the recorded test evaluation; a run from before
    recipes (no recipe keys) that was never evaluated says so, and how to fill it in."""
    out, _ = cli_run
    run_cli("evaluate", out, sample_digits / "test")
    older = tmp_path / "older"
    shutil.copytree(out, older, ignore=shutil.ignore_patterns("evaluations*"))
    metrics = json.loads((out / "metrics.json").read_text())
    before_recipes = {key: value for key, value in metrics.items() if "recipe" not in key}
    del before_recipes["augmentation"]
    (older / "metrics.json").write_text(json.dumps(before_recipes))
    evaluations = json.loads((out / "evaluations.json").read_text())
    test = evaluations[str((sample_digits / "test").resolve())]

    as_json = run_cli("compare", out, older, "--json")
    plain = run_cli("compare", out, older)

    assert as_json.returncode == 0 and plain.returncode == 0, as_json.stderr + plain.stderr
    row = {
        "model": "lenet",
        "image_size": 28,
        "val_accuracy": metrics["val_accuracy"],
        "parameters": metrics["parameters"],
        "train_seconds": metrics["train_seconds"],
    }
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
        {"run": str(out), **row, "test_accuracy": test["accuracy"], "test_size": 150,
         "ms_per_image": test["ms_per_image"]},
        {"run": str(older), **row, "test_accuracy": None, "test_size": None, "ms_per_image": None},
    ]  # fmt: skip
    figures = (
        f"lenet | 28 px | {100 * metrics['val_accuracy']:.2f}%",
        f"{metrics['parameters']:,} | {metrics['train_seconds']:.0f} s",
    )
    assert plain.stdout.splitlines() == [
        "| run | model | input | val acc | test acc | params | train time | ms/img |",
        "|---|---|---|---|---|---|---|---|",
        f"| {out} | {figures[0]} | {100 * test['accuracy']:.2f}% (n=150) | {figures[1]} | "
        f"{test['ms_per_image']:.3f} |",
        f"| {older} | {figures[0]} | not evaluated | {figures[1]} | - |",
    ]
    assert plain.stderr == (
        "note: run `foldervision evaluate RUN TEST_FOLDER` to fill in test accuracy.\n"
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["train", "{tmp}", "--out", "{tmp}/run"], "at least 2"),
        (["evaluate", "{tmp}/no-run", "{tmp}"], "no trained model"),
        (["train", "{tmp}", "--model", "vgg", "--out", "{tmp}/run"], "Unknown model"),
        (["train", "{tmp}", "--recipe", "fancy", "--out", "{tmp}/run"], "Unknown recipe"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, arguments, message):
    """In-process: a missing folder (every command) is in test_snapshots.py, and the real-process
    check that TensorFlow adds nothing to the line is in test_tensorflow_startup.py."""
    result = CliRunner().invoke(app, [argument.format(tmp=tmp_path) for argument in arguments])
    assert result.exit_code == 2, result.exception  # an uncaught exception would exit 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_existing_run_is_refused_with_the_flags_that_get_past_it(cli_run, sample_digits):
    out, _ = cli_run
    before = (out / "metrics.json").read_text()
    result = run_cli("train", sample_digits / "train", "--epochs", "1", "--out", out)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {out}: a run folder already exists here; pass --overwrite to replace it, "
        "or choose another --out."
    )
    assert (out / "metrics.json").read_text() == before


def test_digits_option_takes_several_values():
    assert join_multi_value_options(["data", "mnist", "--digits", "0", "1", "2", "--out", "x"]) == [
        "data",
        "mnist",
        "--digits",
        "0 1 2",
        "--out",
        "x",
    ]
