"""Tests for foldervision.cache: where cached files go, ONNX exports made once, and the hash
check on files we trust."""

from __future__ import annotations

import hashlib

import pytest

from foldervision.cache import cache_directory, cached_onnx_export, sha256_of, verify_sha256
from foldervision.errors import WeightsError
from foldervision.torch_checkpoint import CorruptCheckpointError


def test_cache_directory_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FOLDERVISION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "foldervision"
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path / "mine"))
    assert cache_directory() == tmp_path / "mine"


def test_sha256_of_reads_large_files_in_chunks(tmp_path):
    payload = bytes(range(256)) * 10_000  # 2.5 MB: more than one 1 MB chunk
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    assert sha256_of(path) == hashlib.sha256(payload).hexdigest()


def test_a_modified_file_is_refused_in_one_line_with_the_remedy(tmp_path):
    path = tmp_path / "checkpoint.pth"
    path.write_bytes(b"the original bytes")
    expected = sha256_of(path)
    verify_sha256(path, expected, remedy="Download it again.")

    path.write_bytes(b"the original bytez")
    with pytest.raises(CorruptCheckpointError, match="corrupt") as caught:
        verify_sha256(path, expected, remedy="Download it again.")

    message = str(caught.value)
    assert str(path) in message and "Download it again." in message
    assert "\n" not in message
    assert isinstance(caught.value, WeightsError)


def test_an_onnx_export_is_made_once_under_its_key_and_format_version(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path))
    exports = []

    def export(path):
        exports.append(path)
        path.write_bytes(b"exported model")

    first = cached_onnx_export("classifiers", "0123abcd", 1, export)
    again = cached_onnx_export("classifiers", "0123abcd", 1, export)
    newer_recipe = cached_onnx_export("classifiers", "0123abcd", 2, export)

    assert first == again == tmp_path / "classifiers" / "0123abcd-v1.onnx"
    assert newer_recipe == tmp_path / "classifiers" / "0123abcd-v2.onnx"
    assert len(exports) == 2 and first.read_bytes() == b"exported model"
    assert exports[0] != first  # written beside the entry, then moved into place


def test_a_failed_onnx_export_leaves_nothing_and_the_next_call_exports_again(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLDERVISION_CACHE", str(tmp_path))

    def fail_half_way(path):
        path.write_bytes(b"half a model")
        raise RuntimeError("an op the converter does not know")

    with pytest.raises(RuntimeError, match="converter"):
        cached_onnx_export("embedders", "fingerprint", 2, fail_half_way)
    assert list((tmp_path / "embedders").iterdir()) == []

    path = cached_onnx_export("embedders", "fingerprint", 2, lambda path: path.write_bytes(b"ok"))
    assert path.read_bytes() == b"ok"
