"""`foldervision data ...`: get standard data sets as class-per-subfolder folders."""

from __future__ import annotations

from pathlib import Path

import typer

from foldervision.cli.app import app, console
from foldervision.datasets import MNIST_URL, write_mnist_folders

data_app = typer.Typer(help="Write standard data sets as class-per-subfolder image folders.")
app.add_typer(data_app, name="data")


@data_app.command("mnist")
def mnist(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write OUT/train/<digit>/ and OUT/test/."
    ),
    digits: str = typer.Option(
        "0,1,2", "--digits", help="Digits to keep: --digits 0 1 2 (or 0,1,2).", show_default=True
    ),
    source: str = typer.Option(
        MNIST_URL, "--source", help="Folder with the four MNIST IDX files, or a URL to download."
    ),
    train_per_class: int = typer.Option(
        None, "--train-per-class", help="Keep only the first N training images of each digit."
    ),
    test_per_class: int = typer.Option(
        None, "--test-per-class", help="Keep only the first N test images of each digit."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing OUT/train, test."),
) -> None:
    """Write MNIST digits as PNG files, one subfolder per digit."""
    digit_list = parse_digits(digits)
    counts = write_mnist_folders(
        out, source, digit_list, train_per_class, test_per_class, overwrite
    )
    for split, per_digit in counts.items():
        listing = ", ".join(f"{digit}: {count}" for digit, count in per_digit.items())
        console.print(f"{out / split}: {sum(per_digit.values())} images ({listing})")
    print(out)


def parse_digits(text: str) -> list[int]:
    try:
        return [int(token) for token in text.replace(",", " ").split()]
    except ValueError as error:
        raise ValueError(f"--digits {text!r}: give digits 0-9, e.g. --digits 0 1 2.") from error
