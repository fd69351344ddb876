"""Read a torch checkpoint (`.pth`) into numpy arrays, without torch and without running code.

A `.pth` file is a pickle, and an ordinary pickle can run any code while it loads. This reader
resolves only the handful of globals a plain tensor state dict needs and refuses everything else,
so a crafted file fails with an error instead of executing.
"""

from __future__ import annotations

import collections
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

from foldervision.errors import WeightsError

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


class UnsafeCheckpointError(WeightsError):
    """A checkpoint pickle names a global outside the small allow-list; it is never executed."""


class CorruptCheckpointError(WeightsError):
    """A checkpoint whose bytes are not what they should be (bad hash, truncated, malformed)."""


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
