"""EfficientNet-Lite (Lite0, Lite2) in Keras 3, laid out like the TensorFlow original.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6 instead of swish and with
the stem (32 channels) and head (1280 channels, one block in the first and last stage) kept
fixed while the rest is scaled. Its ImageNet weights come from the PyTorch port in the
lukemelas EfficientNet-PyTorch layout, which pads like TensorFlow's "same" (the extra pixel
bottom/right) and uses batch norm epsilon 1e-3: Keras' own "same" padding and epsilon 1e-3 are
therefore exact here, unlike for torchvision's MobileNetV2.

The model takes raw RGB pixels in [0, 255] (input "pixels") and normalizes them in the graph
((x - 127) / 128, the original's preprocessing), so every backend and export agrees.
Layers of block i are named "block_{i}_..." like MobileNetV2's, so the classifier's freeze
hook ("top:N") works unchanged. The weights are found and converted by
`foldervision.models.efficientnet_lite_weights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

FEATURE_DIM = 1280
IMAGENET_CLASS_COUNT = 1000
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.99
STEM_FILTERS = 32
WIDTH_DIVISOR = 8


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: the compound-scaling coefficients and its native input size."""

    name: str
    width: float
    depth: float
    image_size: int
    dropout: float


VARIANTS = {
    variant.name: variant
    for variant in (
        LiteVariant("efficientnet-lite0", width=1.0, depth=1.0, image_size=224, dropout=0.2),
        LiteVariant("efficientnet-lite2", width=1.1, depth=1.2, image_size=260, dropout=0.3),
    )
}
"""The coefficients of TensorFlow's efficientnet_lite_builder, for the variants with weights."""


@dataclass(frozen=True)
class LiteBlock:
    """One MBConv block (no squeeze-excite): expansion, kernel, stride, channels in and out."""

    index: int
    expansion: int
    kernel_size: int
    stride: int
    input_filters: int
    filters: int


# EfficientNet-B0's stages (repeats, kernel, stride, expansion, input, output), before scaling.
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by `width`, rounded to a multiple of 8 (never down by more than 10%)."""
    scaled = filters * width
    rounded = max(WIDTH_DIVISOR, int(scaled + WIDTH_DIVISOR / 2) // WIDTH_DIVISOR * WIDTH_DIVISOR)
    return int(rounded + WIDTH_DIVISOR if rounded < 0.9 * scaled else rounded)


def block_shapes(variant: LiteVariant) -> list[LiteBlock]:
    """The blocks in order; the first and last stage keep one block whatever the depth."""
    blocks: list[LiteBlock] = []
    last_stage = len(_STAGES) - 1
    for stage, (repeats, kernel, stride, expansion, inputs, outputs) in enumerate(_STAGES):
        fixed = stage in (0, last_stage)
        count = repeats if fixed else int(math.ceil(variant.depth * repeats))
        input_filters = STEM_FILTERS if stage == 0 else round_filters(inputs, variant.width)
        filters = round_filters(outputs, variant.width)
        for repeat in range(count):
            blocks.append(
                LiteBlock(
                    index=len(blocks),
                    expansion=expansion,
                    kernel_size=kernel,
                    stride=stride if repeat == 0 else 1,
                    input_filters=input_filters if repeat == 0 else filters,
                    filters=filters,
                )
            )
    return blocks


def build_efficientnet_lite(variant: LiteVariant, image_size: int | None = None) -> keras.Model:
    """The network with its 1000-class ImageNet head (logits), randomly initialised.

    The head is always built so that a weights file saved from the full network loads into it;
    `without_top` cuts it at the pooled 1280-d features (layer "pooled"); the last feature map
    is layer "top_relu".
    """
    image_size = image_size or variant.image_size
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    normalize = keras.layers.Rescaling(
        1.0 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD, name="lite_normalization"
    )
    x = normalize(pixels)
    x = _conv_bn_relu6(x, STEM_FILTERS, kernel_size=3, stride=2, name="stem")
    for block in block_shapes(variant):
        x = _mbconv_block(x, block)
    x = _conv_bn_relu6(x, FEATURE_DIM, kernel_size=1, stride=1, name="top")
    x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    x = keras.layers.Dropout(variant.dropout, name="classifier_dropout")(x)
    x = keras.layers.Dense(IMAGENET_CLASS_COUNT, name="predictions")(x)
    return keras.Model(pixels, x, name=variant.name.replace("-", "_"))


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=name
    )


def _conv_bn_relu6(
    x: keras.KerasTensor, filters: int, kernel_size: int, stride: int, name: str
) -> keras.KerasTensor:
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = _batch_norm(f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x)


def _mbconv_block(x: keras.KerasTensor, block: LiteBlock) -> keras.KerasTensor:
    """Expand (1x1), depthwise (k x k), project (1x1, linear); add the input when shapes match."""
    prefix = f"block_{block.index}_"
    inputs = x
    if block.expansion != 1:
        x = keras.layers.Conv2D(
            block.input_filters * block.expansion, 1, use_bias=False, name=f"{prefix}expand"
        )(x)
        x = _batch_norm(f"{prefix}expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    x = keras.layers.DepthwiseConv2D(
        block.kernel_size,
        strides=block.stride,
        padding="same",
        use_bias=False,
        name=f"{prefix}depthwise",
    )(x)
    x = _batch_norm(f"{prefix}depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(block.filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _batch_norm(f"{prefix}project_bn")(x)
    if block.stride == 1 and block.input_filters == block.filters:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x
