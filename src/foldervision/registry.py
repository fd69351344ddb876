"""One registry for every kind of builder: models, recipes, embedding backends, vector stores.

An entry is registered either as the object itself or as a "module:attribute" string that is
imported on first use, so that the command line starts without importing TensorFlow, FAISS or
Milvus. Asking for an unknown name raises one helpful `ValueError` listing the known names.

    MODELS: Registry[ModelEntry] = Registry("model")
    MODELS.register("lenet", ModelEntry(...))
    BACKENDS.register("onnx", "foldervision.retrieval.onnx_backend:onnx_forward")
    BACKENDS.get("onnx")  # imports the module now, once
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


def import_location(location: str) -> object:
    """The attribute a "module:attribute" string names, importing the module."""
    module_name, _, attribute = location.partition(":")
    if not attribute:
        raise ValueError(f"{location!r}: expected 'module:attribute'.")
    return getattr(importlib.import_module(module_name), attribute)


class Registry(Generic[T]):
    """Named entries of one kind; lazy ("module:attribute") entries are imported once, on use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        """What an entry is, in words, for error messages ("model", "vector store")."""
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, entry: T | str) -> T | str:
        """Add (or replace) `name`; a str entry is a "module:attribute" to import on use."""
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(
                f"Unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}."
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = import_location(entry)  # type: ignore[assignment]
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
