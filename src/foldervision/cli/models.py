"""`foldervision models pull|list`: the CLIP models that search by words.

Only parsing and printing here; the download, its pins and checks live in `foldervision.clip.pull`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from foldervision.cli.app import app, console

models_app = typer.Typer(
    name="models",
    help="CLIP models for search by words and zero-shot labels: list them, pull one.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


@models_app.command("pull")
def pull_command(
    name: str = typer.Argument(..., help="A registered model (see `foldervision models list`)."),
    to: Path | None = typer.Option(
        None, "--to", help="Model folder to write (default: the cache; use it with clip:FOLDER)."
    ),
) -> None:
    """Download a model's files from its pinned source (needs the internet, once).

    Each file's sha256 is recorded on first download and a changed file is refused; an
    interrupted download resumes when the command is run again.
    """
    from foldervision.clip.pull import pull_model

    folder = pull_model(name, to, progress=_progress_printer())
    console.print(f"{name}: {folder.config.embed_dim}-d vectors, checked against SHA256SUMS")
    print(folder.path)


@models_app.command("list")
def list_command() -> None:
    """Registered models, whether each is pulled, and where from."""
    from foldervision.clip.models import CLIP_MODELS, models_directory

    for name in CLIP_MODELS:
        entry = CLIP_MODELS.get(name)
        pulled = (models_directory() / name / "config.json").is_file()
        source = f"{entry.source.repository}@{entry.source.revision}"
        print(f"{name}\t{'pulled' if pulled else 'not pulled'}\t{source}\t{entry.description}")


def _progress_printer():  # type: ignore[no-untyped-def]
    """One stderr line per 10% of each file, on a terminal only (a log gets the summary)."""
    if not console.is_terminal:
        return None
    shown: dict[str, int] = {}

    def show(file_name: str, done: int, total: int | None) -> None:
        tenth = 10 * done // total if total else 0
        if total and shown.get(file_name) != tenth:
            shown[file_name] = tenth
            console.print(f"{file_name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    return show
