"""Tests for foldervision.torch_checkpoint: tensors read exactly, malicious pickles refused."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from foldervision.errors import WeightsError
from foldervision.models.mobilenetv2_weights import INSTALL_COMMAND, packaged_checkpoint_path
from foldervision.torch_checkpoint import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    read_torch_checkpoint,
)


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    path = packaged_checkpoint_path()
    if path is None:
        pytest.fail(f"weights package missing; run: {INSTALL_COMMAND}")
    return path


# --------------------------------------------------------------------------------------------
# Hand-made torch checkpoints (torch itself is not installed).


class FakeStorage:
    """Raw elements of one torch storage, pickled as a persistent id like torch does."""

    def __init__(self, key: str, values: np.ndarray, storage_class: type) -> None:
        self.key = key
        self.values = values
        self.storage_class = storage_class


class FakeTensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: FakeStorage, offset: int, size: tuple, stride: tuple) -> None:
        self.arguments = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.arguments


class StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.storage_class, obj.key, "cpu", obj.values.size)
        return None


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in `torch` module, so pickle can name torch's globals exactly as torch does."""
    torch_module = types.ModuleType("torch")
    utils_module = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*arguments):
        raise AssertionError("never called while pickling")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_module._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "HalfStorage", "LongStorage"):
        setattr(torch_module, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch_module)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_module)
    return torch_module


def handmade_state(torch_module: types.ModuleType) -> tuple[dict, dict[str, np.ndarray]]:
    """Tensors exercising offsets, strides, shared storages and several dtypes."""
    shared = FakeStorage("0", np.arange(20, dtype="<f4"), torch_module.FloatStorage)
    halves = FakeStorage("1", np.array([0.5, -2.0, 3.25], dtype="<f2"), torch_module.HalfStorage)
    longs = FakeStorage("2", np.array([7, -1], dtype="<i8"), torch_module.LongStorage)
    base = np.arange(20, dtype=np.float32)
    state = collections.OrderedDict(
        contiguous=FakeTensor(shared, 0, (2, 3), (3, 1)),
        offset_and_transposed=FakeTensor(shared, 5, (3, 2), (1, 3)),
        scalar=FakeTensor(longs, 1, (), ()),
        halves=FakeTensor(halves, 0, (3,), (1,)),
    )
    expected = {
        "contiguous": base[:6].reshape(2, 3),
        "offset_and_transposed": base[5:11].reshape(2, 3).T,
        "scalar": np.array(-1, dtype=np.int64),
        "halves": np.array([0.5, -2.0, 3.25], dtype=np.float16),
    }
    return state, expected


def pickled(state: object) -> bytes:
    buffer = io.BytesIO()
    StoragePickler(buffer, protocol=2).dump(state)
    return buffer.getvalue()


def write_zip_checkpoint(path: Path, state: object, storages: list[FakeStorage]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled(state))
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.values.tobytes())


def write_legacy_checkpoint(path: Path, state: object, storages: list[FakeStorage]) -> None:
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {}):
            pickle.dump(header, file, protocol=2)
        file.write(pickled(state))
        pickle.dump([storage.key for storage in storages], file, protocol=2)
        for storage in storages:
            file.write(struct.pack("<q", storage.values.size) + storage.values.tobytes())


def storages_of(state: dict) -> list[FakeStorage]:
    unique = {tensor.arguments[0].key: tensor.arguments[0] for tensor in state.values()}
    return list(unique.values())


# --------------------------------------------------------------------------------------------
# Reader.


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_reader_applies_offsets_strides_and_dtypes(tmp_path, fake_torch, writer):
    state, expected = handmade_state(fake_torch)
    path = tmp_path / "handmade.pth"
    writer(path, state, storages_of(state))

    tensors = read_torch_checkpoint(path)

    assert list(tensors) == list(expected)
    for name, array in expected.items():
        assert tensors[name].dtype == array.dtype, name
        np.testing.assert_array_equal(tensors[name], array, err_msg=name)
        assert tensors[name].flags.owndata or tensors[name].base is None, "must be a copy"


def test_reader_refuses_tensor_outside_its_storage(tmp_path, fake_torch):
    storage = FakeStorage("0", np.arange(4, dtype="<f4"), fake_torch.FloatStorage)
    state = {"too_long": FakeTensor(storage, 2, (3,), (1,))}
    path = tmp_path / "bad.pth"
    write_zip_checkpoint(path, state, [storage])

    with pytest.raises(CorruptCheckpointError, match="outside its storage"):
        read_torch_checkpoint(path)


def test_reader_reads_the_real_legacy_checkpoint(checkpoint):
    tensors = read_torch_checkpoint(checkpoint)

    assert len(tensors) == 314
    assert tensors["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert tensors["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert tensors["classifier.1.weight"].shape == (1000, 1280)
    assert tensors["features.0.1.num_batches_tracked"].dtype == np.int64
    assert tensors["features.18.1.running_var"].min() > 0
    assert np.isfinite(tensors["classifier.1.weight"]).all()


class Exploit:
    """Unpickling this would call `function(argument)`: exactly what the reader must refuse."""

    def __init__(self, function, argument: str) -> None:
        self.function = function
        self.argument = argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize(
    ("function", "forbidden"), [(os.system, "system"), (eval, r"builtin\w*\.eval")]
)
@pytest.mark.parametrize("container", ["plain", "zip", "legacy"])
def test_reader_refuses_code_execution(tmp_path, function, forbidden, container):
    marker = tmp_path / "pwned"
    payload = f"touch {marker}" if function is os.system else f"open({str(marker)!r}, 'w').close()"
    state = {"weight": Exploit(function, payload)}
    path = tmp_path / "evil.pth"
    if container == "zip":
        write_zip_checkpoint(path, state, [])
    elif container == "legacy":
        write_legacy_checkpoint(path, state, [])
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))

    with pytest.raises(UnsafeCheckpointError, match=forbidden) as caught:
        read_torch_checkpoint(path)

    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert not marker.exists()


def test_reader_refuses_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        read_torch_checkpoint(tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a pickle")
    with pytest.raises(CorruptCheckpointError, match="garbage.pth"):
        read_torch_checkpoint(garbage)
