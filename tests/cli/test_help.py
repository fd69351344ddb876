"""Every command's --help renders: it is the first thing a user reads of an option."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from foldervision.cli import app


def command_paths() -> list[list[str]]:
    """Every command and sub-command, as the words a user types."""
    paths: list[list[str]] = []

    def walk(command, words: list[str]) -> None:  # type: ignore[no-untyped-def]
        children = getattr(command, "commands", {})
        for name, child in children.items():
            paths.append([*words, name])
            walk(child, [*words, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("words", command_paths(), ids=" ".join)
def test_help_renders_for_every_command(words: list[str]) -> None:
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert words[-1] in result.output


def test_store_help_shows_the_milvus_database_name_literally() -> None:
    result = CliRunner().invoke(app, ["index", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "[/DBNAME]" in result.output
