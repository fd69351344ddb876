"""The Typer app and the error handling every command shares."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from typer.core import TyperGroup

from foldervision.errors import (
    AlreadyExistsError,
    IndexMismatchError,
    IndexUnavailableError,
    StoreLockedError,
    TopKError,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Messages for people go to stderr so that stdout stays pipe-friendly (JSON, paths); lines are
never cut at 80 columns when stderr is a pipe or a log file (a path must stay whole)."""

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)
"""Errors a user can cause and fix; they print one line, never a traceback."""


FLAG_HINTS: dict[type[Exception], str] = {
    AlreadyExistsError: "pass --overwrite to replace it, or choose another --out",
    IndexMismatchError: "pass --rebuild to start over, or --index PATH for a separate index",
    IndexUnavailableError: "pass --index PATH with a writable location",
    StoreLockedError: "wait for it to finish, pass another --store milvus:PATH.db, or share "
    "vectors between processes through a Milvus server (--store milvus:http://HOST:19530)",
    TopKError: "pass another -k",
}
"""What a person can type to get past each typed library error."""


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the current folder when it lies under it."""
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def plural(count: int, noun: str) -> str:
    """'1 group', '3 groups'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def user_message(error: Exception) -> str:
    """The library's statement of the facts, plus the command-line flag that fixes it."""
    message = str(error).rstrip(". ")
    for error_type, hint in FLAG_HINTS.items():
        if isinstance(error, error_type):
            return f"{message}; {hint}."
    return str(error)


class _FriendlyErrors(TyperGroup):
    """Turn user errors raised anywhere in a command into one line on stderr and exit code 2."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            console.print(f"error: {user_message(error)}", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="foldervision",
    cls=_FriendlyErrors,
    help="Folders of images in: classifiers (LeNet, MobileNetV2) and image search out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def installed_version() -> str:
    """The version pip recorded for this install (the wheel's metadata, not a second copy)."""
    try:
        return importlib.metadata.version("foldervision")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown (not installed)"


def _print_version(requested: bool) -> None:
    if requested:
        print(f"foldervision {installed_version()}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    pass


MULTI_VALUE_OPTIONS = ("--digits",)
"""Options that take several space-separated values (`--digits 0 1 2`), which Click cannot."""


def join_multi_value_options(arguments: list[str]) -> list[str]:
    """Fold `--digits 0 1 2` into `--digits "0 1 2"` before Click parses the command line."""
    joined: list[str] = []
    index = 0
    while index < len(arguments):
        joined.append(arguments[index])
        if arguments[index] in MULTI_VALUE_OPTIONS:
            values = []
            index += 1
            while index < len(arguments) and not arguments[index].startswith("-"):
                values.append(arguments[index])
                index += 1
            joined.append(" ".join(values))
            continue
        index += 1
    return joined


def main(arguments: list[str] | None = None) -> None:
    app(args=join_multi_value_options(sys.argv[1:] if arguments is None else list(arguments)))
