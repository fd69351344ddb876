"""The CLIP model folder: what `scripts/export_clip.py` writes, `models pull` fetches and
`--model clip:FOLDER` reads.

    FOLDER/
      config.json    how to feed the towers (below)
      image.onnx     float32 (N, 3, S, S), normalised pixels -> (N, D) image features
      text.onnx      int64 or int32 (N, context_length) token ids -> (N, D) text features
      SHA256SUMS     "HASH  NAME" for every other file (`sha256sum -c SHA256SUMS` checks it)
      vocab.txt.gz   optional BPE merges; without it, OpenAI's (shipped in this package)

config.json: {"format": 1, "name", "image_size", "mean", "std", "interpolation" ("bicubic" or
"bilinear"), "resize_mode" ("shortest"), "context_length", "embed_dim", "logit_scale" (the
trained temperature, exp'd: zero-shot probabilities are softmax(logit_scale * cosine)),
"vocabulary" (null or a file name in the folder), "source" (where it came from, free form)}.
Features need not be unit length: they are normalised here, as OpenCLIP's
`encode_image(normalize=True)` does. A tower may take a batch of one only (a static export);
the runtime then runs it one row at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foldervision.atomic import write_text_atomic
from foldervision.cache import sha256_of
from foldervision.errors import FoldervisionError

CONFIG_NAME = "config.json"
IMAGE_TOWER = "image.onnx"
TEXT_TOWER = "text.onnx"
MANIFEST_NAME = "SHA256SUMS"
FOLDER_FORMAT = 1
RESIZE_MODES = ("shortest",)
GET_ONE = "make one with scripts/export_clip.py, or run `foldervision models pull clip-vit-b32`"


class ModelFolderError(FoldervisionError):
    """A CLIP model folder that is missing, incomplete or damaged."""


@dataclass(frozen=True)
class ClipConfig:
    """config.json, checked: everything that decides how images and texts enter the towers."""

    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    embed_dim: int
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    logit_scale: float = 100.0
    vocabulary: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FOLDER_FORMAT,
            "name": self.name,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "context_length": self.context_length,
            "embed_dim": self.embed_dim,
            "logit_scale": self.logit_scale,
            "vocabulary": self.vocabulary,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipConfig:
        return cls(
            name=str(data["name"]),
            image_size=int(data["image_size"]),
            mean=tuple(float(value) for value in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(value) for value in data["std"]),  # type: ignore[arg-type]
            context_length=int(data["context_length"]),
            embed_dim=int(data["embed_dim"]),
            interpolation=str(data.get("interpolation", "bicubic")),
            resize_mode=str(data.get("resize_mode", "shortest")),
            logit_scale=float(data.get("logit_scale", 100.0)),
            vocabulary=data.get("vocabulary"),
            source=dict(data.get("source", {})),
        )


@dataclass(frozen=True)
class ModelFolder:
    """A checked model folder: its config and the files it names."""

    path: Path
    config: ClipConfig

    @property
    def image_tower(self) -> Path:
        return self.path / IMAGE_TOWER

    @property
    def text_tower(self) -> Path:
        return self.path / TEXT_TOWER

    @property
    def vocabulary(self) -> Path | None:
        return self.path / self.config.vocabulary if self.config.vocabulary else None

    def recorded_sha256(self, name: str) -> str:
        """The file's hash as SHA256SUMS records it (computed when the folder has no manifest):
        identifies the weights without reading hundreds of MB on every start."""
        return read_manifest(self.path).get(name) or sha256_of(self.path / name)


def read_model_folder(path: str | os.PathLike[str]) -> ModelFolder:
    """Open a model folder; anything missing or malformed is one line naming the fix."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such CLIP model folder; {GET_ONE}.")
    config_path = folder / CONFIG_NAME
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        config = ClipConfig.from_dict(data)
    except FileNotFoundError:
        message = f"{folder}: not a CLIP model folder (no {CONFIG_NAME}); {GET_ONE}."
        raise ModelFolderError(message) from None
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFolderError(
            f"{config_path}: not a valid CLIP model config ({type(error).__name__}: {error}); "
            f"{GET_ONE}."
        ) from None
    check_config(config, config_path, int(data.get("format", FOLDER_FORMAT)))
    model = ModelFolder(folder, config)
    for required in (model.image_tower, model.text_tower, model.vocabulary):
        if required is not None and not required.is_file():
            raise ModelFolderError(f"{folder}: {required.name} is missing; {GET_ONE}.")
    return model


def check_config(config: ClipConfig, config_path: Path, folder_format: int) -> None:
    if folder_format != FOLDER_FORMAT:
        raise ModelFolderError(
            f"{config_path}: model folder format {folder_format}, this foldervision reads "
            f"format {FOLDER_FORMAT}; upgrade foldervision or export the folder again."
        )
    if config.resize_mode not in RESIZE_MODES or len(config.mean) != 3 or len(config.std) != 3:
        raise ModelFolderError(
            f"{config_path}: unsupported preprocessing (resize_mode {config.resize_mode!r}, "
            f"{len(config.mean)} mean and {len(config.std)} std values); expected resize_mode "
            "'shortest' and three values each."
        )


def read_manifest(folder: Path) -> dict[str, str]:
    """SHA256SUMS as {file name: hex sha256}; empty when the folder has none."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition("  ")
        if name:
            entries[name.lstrip("*")] = digest
    return entries


def write_manifest(folder: Path) -> dict[str, str]:
    """Hash every file of the folder (not the manifest itself) into SHA256SUMS."""
    names = sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and path.name != MANIFEST_NAME and not path.name.startswith(".")
    )
    entries = {name: sha256_of(folder / name) for name in names}
    write_text_atomic(
        folder / MANIFEST_NAME, "".join(f"{digest}  {name}\n" for name, digest in entries.items())
    )
    return entries


def verify_model_folder(path: str | os.PathLike[str]) -> ModelFolder:
    """Open the folder and check every file against SHA256SUMS (which must exist)."""
    model = read_model_folder(path)
    manifest = read_manifest(model.path)
    if not manifest:
        raise ModelFolderError(f"{model.path}: no {MANIFEST_NAME} to check the files against.")
    for name, expected in manifest.items():
        file = model.path / name
        if not file.is_file() or sha256_of(file) != expected:
            raise ModelFolderError(
                f"{file}: missing or changed since {MANIFEST_NAME} was written; {GET_ONE}."
            )
    return model
