"""Which CLIP index, if any, lets a served folder be searched by words (the page's text box)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from foldervision.errors import FoldervisionError
from foldervision.retrieval.settings import IndexSettings

NO_TEXT_INDEX_HINT = (
    "To search by words, index the folder with a CLIP model too: foldervision index {database} "
    "--model clip-vit-b32 (after foldervision models pull clip-vit-b32), or --model clip:FOLDER "
    "with a folder made by scripts/export_clip.py; then serve again."
)


def text_index_settings(
    settings: IndexSettings, index_path: Path
) -> tuple[IndexSettings | None, str]:
    """Settings that open a CLIP index beside `index_path` (the default index) to search the
    same folder by words, or None and one line saying how to get there.

    Only an index whose model can be loaded without being named counts: a registered model
    that `models pull` fetched (`clip-vit-b32`). An index made with `clip:FOLDER` names only
    its model's name, not the folder, so the hint asks for the folder (`serve --text-model`)."""
    from foldervision.clip.model_folder import ModelFolderError
    from foldervision.clip.models import CLIP_MODELS, resolve_model_folder
    from foldervision.retrieval.catalogue import Catalogue
    from foldervision.retrieval.index import CLIP_MODEL_PREFIX, default_index_path

    folders = {Path(index_path).parent, default_index_path(settings.database).parent}
    found: list[tuple[Path, str]] = []
    for candidate in sorted(path for folder in folders for path in folder.glob("index.*.sqlite")):
        try:
            catalogue = Catalogue.open_read_only(candidate)
        except FoldervisionError:
            continue  # not an index (a signature cache), or unreadable
        try:
            spec = catalogue.stored_spec()
        finally:
            catalogue.close()
        if spec is not None and spec.model.startswith(CLIP_MODEL_PREFIX):
            found.append((candidate, spec.model.removeprefix(CLIP_MODEL_PREFIX)))
    if not found:
        return None, NO_TEXT_INDEX_HINT.format(database=settings.database)
    for path, name in found:
        if name in CLIP_MODELS:
            try:
                resolve_model_folder(name)
            except ModelFolderError:
                continue
            chosen = dataclasses.replace(
                settings, model=name, index_path=path, decoding=None, scales=None
            )
            return chosen, ""
    path, name = found[0]
    return None, (
        f"{path}: a CLIP index made by {name}, whose model folder is not known here; serve "
        f"with --text-model clip:FOLDER (the folder it was made with) to search by words."
    )
