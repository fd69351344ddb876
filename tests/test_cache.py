"""Tests for foldervision.cache: where cached files go, and the hash check on files we trust."""

from __future__ import annotations

import hashlib

import pytest

from foldervision.cache import cache_directory, sha256_of, verify_sha256
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
