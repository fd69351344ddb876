"""The assignment's script: list the images in query_images/, ask which, show the 4 nearest.

A thin wrapper over `foldervision search`: the same index (images_database/.foldervision/),
the same features and the same output, plus a contact sheet written to search_results.png.

    python image_retrieval.py
"""

from __future__ import annotations

from pathlib import Path

from foldervision.cli import app

HERE = Path(__file__).resolve().parent


def main() -> None:
    app(
        [
            "search",
            "--database",
            str(HERE / "images_database"),
            "--pick-from",
            str(HERE / "query_images"),
            "-k",
            "4",
        ],  # fmt: skip
        prog_name="image_retrieval.py",
    )


if __name__ == "__main__":
    main()
