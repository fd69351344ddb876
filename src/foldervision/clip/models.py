"""The CLIP models `--model` names: registered ones (fetched by `models pull`) and `clip:FOLDER`.

A registered model names a pinned source: one repository at one revision, the files to fetch
and how they are laid out there. `clip-vit-b32` is OpenAI's ViT-B/32 as exported to ONNX by
Immich (the photo library) with OpenCLIP: image and text towers in separate files, OpenCLIP's
model config and preprocessing config beside them ("openclip-split" below). Nothing is fetched
unless `foldervision models pull NAME` is run; the pulled folder lives in the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from foldervision.cache import cache_directory
from foldervision.clip.model_folder import (
    CONFIG_NAME,
    IMAGE_TOWER,
    TEXT_TOWER,
    ModelFolder,
    ModelFolderError,
    read_model_folder,
)
from foldervision.registry import Registry

FOLDER_PREFIX = "clip:"
DEFAULT_CLIP_MODEL = "clip-vit-b32"
"""What `search --text`, `predict --labels` and `evaluate --zero-shot` use without --model."""
URL_TEMPLATE = "https://huggingface.co/{repository}/resolve/{revision}/{path}"
URL_TEMPLATE_VARIABLE = "FOLDERVISION_MODELS_URL"
"""Overrides URL_TEMPLATE (same {repository}, {revision}, {path} fields): a mirror, a test."""
COMMIT_TEMPLATE = "https://huggingface.co/api/models/{repository}/revision/{revision}"
"""Where a revision (a branch such as `main`) is turned into the commit it points at."""
COMMIT_TEMPLATE_VARIABLE = "FOLDERVISION_MODELS_COMMIT_URL"
"""Overrides COMMIT_TEMPLATE. With FOLDERVISION_MODELS_URL set and this not, the mirror is
taken at the revision's name (the recorded file hashes still refuse a changed file)."""
OPENCLIP_CONFIG = "open_clip_config.json"
PREPROCESS_CONFIG = "preprocess_cfg.json"
LAYOUTS = ("foldervision", "openclip-split")


@dataclass(frozen=True)
class PinnedSource:
    """One repository at one revision; `files` maps each remote path to its name here."""

    repository: str
    revision: str
    files: dict[str, str]
    layout: str = "foldervision"
    """"foldervision": the files are a model folder already; "openclip-split": config.json is
    written here from OpenCLIP's model and preprocessing configs."""

    def url(self, remote_path: str) -> str:
        template = os.environ.get(URL_TEMPLATE_VARIABLE) or URL_TEMPLATE
        return template.format(repository=self.repository, revision=self.revision, path=remote_path)

    def commit_url(self) -> str | None:
        """Where to ask which commit `revision` names (None: a mirror with no such service)."""
        template = os.environ.get(COMMIT_TEMPLATE_VARIABLE)
        if template is None and os.environ.get(URL_TEMPLATE_VARIABLE):
            return None
        return (template or COMMIT_TEMPLATE).format(
            repository=self.repository, revision=self.revision
        )

    def pin_key(self, remote_path: str) -> str:
        """What a recorded hash is filed under: the same file from any mirror has one key."""
        return f"{self.repository}@{self.revision}/{remote_path}"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    source: PinnedSource
    logit_scale: float = 100.0
    """The trained temperature, when the source's files do not say it (OpenAI's is 100)."""
    notes: dict[str, str] = field(default_factory=dict)


CLIP_MODELS: Registry[RegisteredModel] = Registry("CLIP model")
CLIP_MODELS.register(
    "clip-vit-b32",
    RegisteredModel(
        name="clip-vit-b32",
        description="OpenAI CLIP ViT-B/32 (OpenCLIP ViT-B-32 openai), Immich's ONNX export",
        source=PinnedSource(
            repository="immich-app/ViT-B-32__openai",
            revision="main",
            files={
                "config.json": OPENCLIP_CONFIG,
                "visual/preprocess_cfg.json": PREPROCESS_CONFIG,
                "visual/model.onnx": IMAGE_TOWER,
                "textual/model.onnx": TEXT_TOWER,
            },
            layout="openclip-split",
        ),
    ),
)


def models_directory() -> Path:
    """`<cache>/models`: pulled model folders, one per name, and the recorded hashes."""
    return cache_directory() / "models"


def is_clip_model(model: str) -> bool:
    return model.startswith(FOLDER_PREFIX) or model in CLIP_MODELS


def resolve_model_folder(model: str) -> ModelFolder:
    """`clip:FOLDER` -> that folder; a registered name -> its pulled folder (or how to pull it)."""
    if model.startswith(FOLDER_PREFIX):
        return read_model_folder(Path(model[len(FOLDER_PREFIX) :]).expanduser())
    entry = CLIP_MODELS.get(model)
    folder = models_directory() / entry.name
    if not (folder / CONFIG_NAME).is_file():
        raise ModelFolderError(
            f"{entry.name} is not downloaded yet; run `foldervision models pull {entry.name}` "
            "(needs the internet once), or pass --model clip:FOLDER with a folder made by "
            "scripts/export_clip.py."
        )
    return read_model_folder(folder)
