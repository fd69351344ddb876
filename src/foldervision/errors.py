"""Errors a user can cause and fix. The library states the facts; the CLI adds the flags.

Every class derives from ValueError so callers that only know "bad input" can catch that.
The command line prints one line (`error: <message>; <hint>`) and exits with code 2; the hint
for each class lives in `foldervision.cli.app`, the one place that knows the flags.
"""

from __future__ import annotations


class FoldervisionError(ValueError):
    """A problem with the user's input or files; the message names the file and the fix."""


class AlreadyExistsError(FoldervisionError):
    """The output (a run folder, an export, a data folder) exists and would be overwritten."""


class IndexMismatchError(FoldervisionError):
    """An index or vector store was made by another embedder; its vectors don't compare."""


class IndexUnavailableError(FoldervisionError):
    """An index file cannot be opened or created where it is (read-only folder, damaged file)."""


class StoreLockedError(FoldervisionError):
    """Another process holds the vector store open for writing."""


class WeightsError(FoldervisionError):
    """A weights file or source the user pointed at cannot be used."""


class TopKError(FoldervisionError):
    """k, the number of matches asked for, is outside what a search answers."""


class EmptyIndexError(FoldervisionError):
    """The index holds no images yet, so a search has nothing to answer with."""
