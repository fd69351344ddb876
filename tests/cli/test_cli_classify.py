"""The `foldervision` command as a user runs it: outputs, JSON, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest
from user_process import run_cli

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
        "1",
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
    assert evaluation["size"] == 150 and 0 <= evaluation["accuracy"] <= 1


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


def test_compare_table(cli_run, sample_digits):
    out, _ = cli_run
    run_cli("evaluate", out, sample_digits / "test")
    result = run_cli("compare", out, "--json")
    row = json.loads(result.stdout)
    assert row["model"] == "lenet" and row["test_size"] == 150


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["train", "{tmp}/missing", "--out", "{tmp}/run"], "folder not found"),
        (["train", "{tmp}", "--out", "{tmp}/run"], "at least 2"),
        (["evaluate", "{tmp}/no-run", "{tmp}"], "no trained model"),
        (["train", "{tmp}", "--model", "vgg", "--out", "{tmp}/run"], "Unknown model"),
        (["train", "{tmp}", "--recipe", "fancy", "--out", "{tmp}/run"], "Unknown recipe"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, arguments, message):
    result = run_cli(*[argument.format(tmp=tmp_path) for argument in arguments])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
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
