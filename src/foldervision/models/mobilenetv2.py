"""MobileNetV2 in Keras 3, laid out exactly like torchvision's so its ImageNet weights fit.

Why not `keras.applications.MobileNetV2`? Its stride-2 layers pad asymmetrically (TensorFlow's
"same") and its batch norms use epsilon 1e-3; torchvision pads one pixel on every side and uses
1e-5. Loading torchvision's weights into the stock graph shifts the features (see
`benchmarks/weights_fidelity.py`), so this builder mirrors torchvision layer for layer.

The model takes raw RGB pixels in [0, 255] (input "pixels") and normalizes them in the graph, so
training, evaluation, prediction and export all share one preprocessing path.

This module is the network only; `foldervision.models.mobilenetv2_weights` finds, converts and
loads the pretrained weights into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras

MOBILENETV2_FEATURE_DIM = 1280
IMAGENET_CLASS_COUNT = 1000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_EPSILON = 1e-5  # torch's default; the weights were trained with it
BATCH_NORM_MOMENTUM = 0.9  # torch's momentum=0.1 counts the other way round
CLASSIFIER_DROPOUT = 0.2


@dataclass(frozen=True)
class BlockShape:
    """One inverted residual block: expansion factor, output channels and stride."""

    index: int
    expansion: int
    filters: int
    stride: int


# torchvision's inverted_residual_setting (t, c, n, s) for width 1.0, unrolled into 17 blocks.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def block_shapes() -> list[BlockShape]:
    """The 17 inverted residual blocks in order; block i is torchvision's features[i + 1]."""
    shapes = []
    for expansion, filters, repeats, stride in _STAGES:
        for repeat in range(repeats):
            shapes.append(BlockShape(len(shapes), expansion, filters, stride if repeat == 0 else 1))
    return shapes


BLOCK_COUNT = len(block_shapes())
BLOCK_LAYER_NAME = re.compile(r"^block_(\d+)_")


def block_index(layer_name: str) -> int | None:
    """Which inverted residual block a layer belongs to (None for the stem and the head)."""
    match = BLOCK_LAYER_NAME.match(layer_name)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------
# Architecture.


def build_mobilenetv2(image_size: int = 224) -> keras.Model:
    """MobileNetV2 (width 1.0) with its 1000-class ImageNet head (logits), randomly initialised.

    The head is always built so that a weights file saved from the full network loads into it;
    `without_top` then cuts it at the pooled 1280-d features (layer "pooled").
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = _normalize_pixels(pixels)
    x = _conv_bn_relu6(x, 32, kernel_size=3, stride=2, name="Conv1", bn_name="bn_Conv1")
    for block in block_shapes():
        x = _inverted_residual_block(x, block)
    x = _conv_bn_relu6(x, MOBILENETV2_FEATURE_DIM, kernel_size=1, stride=1,
                       name="Conv_1", bn_name="Conv_1_bn", relu_name="out_relu")  # fmt: skip
    x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    x = keras.layers.Dropout(CLASSIFIER_DROPOUT, name="classifier_dropout")(x)
    x = keras.layers.Dense(IMAGENET_CLASS_COUNT, name="predictions")(x)
    return keras.Model(pixels, x, name="mobilenetv2")


def without_top(model: keras.Model) -> keras.Model:
    """The same network (shared layers and weights) ending at the pooled features."""
    return keras.Model(model.input, model.get_layer("pooled").output, name=model.name)


def _normalize_pixels(pixels: keras.KerasTensor) -> keras.KerasTensor:
    """[0, 255] pixels -> ImageNet mean/std, torchvision's convention, as one per-channel affine.

    (x / 255 - mean) / std == x * scale + offset; one Rescaling layer keeps every export
    format (TFLite, ONNX) free of the constant inputs a Normalization layer would leave.
    """
    scale = [1.0 / (255.0 * std) for std in IMAGENET_STD]
    offset = [-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD)]
    return keras.layers.Rescaling(scale=scale, offset=offset, name="imagenet_normalization")(pixels)


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=name
    )


def _symmetric_padding(x: keras.KerasTensor, stride: int, name: str) -> tuple:
    """torch pads 1 pixel on every side; Keras "same" at stride 2 pads only bottom/right."""
    if stride == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x), "valid"


def _conv_bn_relu6(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    stride: int,
    name: str,
    bn_name: str,
    relu_name: str | None = None,
) -> keras.KerasTensor:
    x, padding = _symmetric_padding(x, stride, name) if kernel_size > 1 else (x, "valid")
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=False, name=name
    )(x)
    x = _batch_norm(bn_name)(x)
    return keras.layers.ReLU(6.0, name=relu_name or f"{name}_relu")(x)


def _inverted_residual_block(x: keras.KerasTensor, block: BlockShape) -> keras.KerasTensor:
    """Expand (1x1), depthwise (3x3), project (1x1, linear); add the input when shapes match."""
    prefix = f"block_{block.index}_"
    inputs = x
    input_channels = x.shape[-1]
    if block.expansion != 1:
        x = keras.layers.Conv2D(
            input_channels * block.expansion, 1, use_bias=False, name=f"{prefix}expand"
        )(x)
        x = _batch_norm(f"{prefix}expand_BN")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    x, padding = _symmetric_padding(x, block.stride, f"{prefix}depthwise")
    x = keras.layers.DepthwiseConv2D(
        3, strides=block.stride, padding=padding, use_bias=False, name=f"{prefix}depthwise"
    )(x)
    x = _batch_norm(f"{prefix}depthwise_BN")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(block.filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _batch_norm(f"{prefix}project_BN")(x)
    if block.stride == 1 and input_channels == block.filters:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x
