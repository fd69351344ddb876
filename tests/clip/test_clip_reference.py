"""foldervision's CLIP against OpenCLIP's own outputs, recorded by scripts/make_clip_fixtures.py:
token ids identical, image and text embeddings within 1e-4, on ONNX Runtime without torch."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from clip_fixtures import FIXTURES, TINY_MODEL

from foldervision.clip.model_folder import ModelFolderError, read_model_folder, verify_model_folder
from foldervision.clip.tokenizer import ClipTokenizer

TOLERANCE = 1e-4


def test_token_ids_are_openclips_on_every_fixture_string(fixture_strings, reference):
    tokens = ClipTokenizer()(fixture_strings)
    expected = reference["tokens_openai"]
    differing = [
        text
        for text, row, want in zip(fixture_strings, tokens, expected)
        if not np.array_equal(row, want)
    ]
    assert len(fixture_strings) >= 1000
    assert differing == []


def test_long_texts_are_cut_with_the_end_token_kept(fixture_strings, reference):
    tokenizer = ClipTokenizer()
    tokens = tokenizer(["photo " * 80, ""])
    assert tokens.shape == (2, 77)
    assert tokens[0, 0] == tokenizer.start_id and tokens[0, -1] == tokenizer.end_id
    assert list(tokens[1, :3]) == [tokenizer.start_id, tokenizer.end_id, 0]
    full_rows = sum(row[-1] != 0 for row in reference["tokens_openai"])
    assert full_rows >= 50  # the fixtures do exercise the cut


def test_a_folders_own_vocabulary_gives_openclips_ids(tiny_embedder, fixture_strings, reference):
    assert np.array_equal(tiny_embedder.tokenizer(fixture_strings), reference["tokens_tiny"])


def test_text_embeddings_match_openclip(tiny_embedder, fixture_strings, reference):
    vectors = tiny_embedder.embed_texts(fixture_strings)
    assert vectors.shape == reference["text_embeddings"].shape
    assert np.abs(vectors - reference["text_embeddings"]).max() < TOLERANCE
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_image_embeddings_match_openclip(tiny_embedder, reference):
    paths = [FIXTURES / "images" / name for name in reference["image_names"]]
    batches = list(tiny_embedder.embed_files(paths, batch_size=4))
    vectors = np.concatenate([batch.vectors for batch in batches])
    assert [path for batch in batches for path in batch.paths] == paths
    assert np.abs(vectors - reference["image_embeddings"]).max() < TOLERANCE


def test_an_uploaded_image_embeds_as_the_same_file_does(tiny_embedder, reference):
    name = str(reference["image_names"][-1])
    vector = tiny_embedder.embed_bytes((FIXTURES / "images" / name).read_bytes(), name)
    assert np.abs(vector - reference["image_embeddings"][-1]).max() < TOLERANCE


def test_no_torch_and_no_tensorflow_on_the_way(tiny_embedder, fixture_strings):
    tiny_embedder.embed_texts(fixture_strings[:3])
    assert "torch" not in sys.modules and "open_clip" not in sys.modules
    assert tiny_embedder.spec.model == "clip:tiny-clip"
    assert tiny_embedder.spec.image_size == 64


def test_the_committed_folder_matches_its_manifest():
    assert verify_model_folder(TINY_MODEL).config.embed_dim == 16


def test_a_broken_model_folder_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(ModelFolderError, match="no such CLIP model folder.*export_clip.py"):
        read_model_folder(tmp_path / "absent")
    folder = tmp_path / "model"
    shutil.copytree(TINY_MODEL, folder)
    (folder / "text.onnx").unlink()
    with pytest.raises(ModelFolderError, match="text.onnx is missing"):
        read_model_folder(folder)
    shutil.copyfile(TINY_MODEL / "text.onnx", folder / "text.onnx")
    with (folder / "image.onnx").open("ab") as file:
        file.write(b"changed")
    with pytest.raises(ModelFolderError, match="image.onnx: missing or changed"):
        verify_model_folder(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["image_size"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="not a valid CLIP model config.*image_size"):
        read_model_folder(folder)
