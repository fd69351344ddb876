"""`python -m foldervision` runs the command-line tool."""

from foldervision.cli import main

main()
