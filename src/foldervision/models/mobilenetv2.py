"""MobileNetV2 in Keras 3, laid out exactly like torchvision's so its ImageNet weights fit.

Why not `keras.applications.MobileNetV2`? Its stride-2 layers pad asymmetrically (TensorFlow's
"same") and its batch norms use epsilon 1e-3; torchvision pads one pixel on every side and uses
1e-5. Loading torchvision's weights into the stock graph shifts the features (see
`benchmarks/weights_fidelity.py`), so this builder mirrors torchvision layer for layer.

The model takes raw RGB pixels in [0, 255] (input "pixels") and normalizes them in the graph, so
training, evaluation, prediction and export all share one preprocessing path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import keras
import numpy as np

from foldervision.weights import (
    ResolvedWeights,
    WeightsError,
    keras_imagenet_unavailable,
    resolve_mobilenetv2_weights,
)

MOBILENETV2_FEATURE_DIM = 1280
IMAGENET_CLASS_COUNT = 1000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_EPSILON = 1e-5  # torch's default; the weights were trained with it
BATCH_NORM_MOMENTUM = 0.9  # torch's momentum=0.1 counts the other way round
CLASSIFIER_DROPOUT = 0.2


@dataclass(frozen=True)
class BlockSpec:
    """One inverted residual block: expansion factor, output channels and stride."""

    index: int
    expansion: int
    filters: int
    stride: int


# torchvision's inverted_residual_setting (t, c, n, s) for width 1.0, unrolled into 17 blocks.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def block_specs() -> list[BlockSpec]:
    """The 17 inverted residual blocks in order; block i is torchvision's features[i + 1]."""
    specs = []
    for expansion, filters, repeats, stride in _STAGES:
        for repeat in range(repeats):
            specs.append(BlockSpec(len(specs), expansion, filters, stride if repeat == 0 else 1))
    return specs


BLOCK_COUNT = len(block_specs())


# --------------------------------------------------------------------------------------------
# Architecture.


def build_mobilenetv2_backbone(
    image_size: int = 224,
    weights: str | os.PathLike[str] | None = "auto",
    include_top: bool = False,
) -> keras.Model:
    """MobileNetV2 (width 1.0) on raw [0, 255] RGB pixels, with pretrained weights.

    include_top=False outputs the pooled 1280-d feature vector (layer "pooled");
    include_top=True outputs 1000 ImageNet logits (not softmax probabilities).
    weights: "auto" (cache, then offline package, then Keras download), a `.weights.h5` or
    `.pth` path, "keras-imagenet" (Keras' own weights and graph), or None for random init.
    The weights actually used are on `model.resolved_weights` (None for random init).
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    resolved = resolve_mobilenetv2_weights(weights)
    if resolved is not None and resolved.source == "keras-imagenet":
        model = _build_keras_imagenet(image_size, include_top)
    else:
        model = _build_symmetric_mobilenetv2(image_size, include_top=True)
        if resolved is not None:
            _load_weights_file(model, resolved)
        if not include_top:
            model = keras.Model(model.input, model.get_layer("pooled").output, name=model.name)
    model.resolved_weights = resolved
    return model


def load_mobilenetv2_weights(
    model: keras.Model, weights: str | os.PathLike[str] | None = "auto"
) -> ResolvedWeights | None:
    """Load pretrained weights into a model from this builder (any size, with or without top).

    Layers are matched by name, so a model that reuses these layers inside a bigger network
    (a new classification head, say) gets its backbone weights too.
    """
    resolved = resolve_mobilenetv2_weights(weights)
    if resolved is not None and resolved.source == "keras-imagenet":
        raise WeightsError(
            "keras-imagenet weights need Keras' own graph; build the model with "
            "build_mobilenetv2_backbone(weights='keras-imagenet') instead"
        )
    if resolved is not None:
        source = _build_symmetric_mobilenetv2(224, include_top=True)
        _load_weights_file(source, resolved)
        _copy_weights_by_layer_name(source, model)
    model.resolved_weights = resolved
    return resolved


def _copy_weights_by_layer_name(source: keras.Model, target: keras.Model) -> None:
    source_names = {layer.name for layer in source.layers if layer.weights}
    copied = [layer for layer in target.layers if layer.name in source_names]
    if not copied:
        raise WeightsError(f"model {target.name!r} has no MobileNetV2 layers to load weights into")
    for layer in copied:
        layer.set_weights(source.get_layer(layer.name).get_weights())


def _build_symmetric_mobilenetv2(image_size: int, include_top: bool) -> keras.Model:
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = _normalize_pixels(pixels)
    x = _conv_bn_relu6(x, 32, kernel_size=3, stride=2, name="Conv1", bn_name="bn_Conv1")
    for spec in block_specs():
        x = _inverted_residual_block(x, spec)
    x = _conv_bn_relu6(x, MOBILENETV2_FEATURE_DIM, kernel_size=1, stride=1,
                       name="Conv_1", bn_name="Conv_1_bn", relu_name="out_relu")  # fmt: skip
    x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    if include_top:
        x = keras.layers.Dropout(CLASSIFIER_DROPOUT, name="classifier_dropout")(x)
        x = keras.layers.Dense(IMAGENET_CLASS_COUNT, name="predictions")(x)
    return keras.Model(pixels, x, name="mobilenetv2")


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


def _inverted_residual_block(x: keras.KerasTensor, spec: BlockSpec) -> keras.KerasTensor:
    """Expand (1x1), depthwise (3x3), project (1x1, linear); add the input when shapes match."""
    prefix = f"block_{spec.index}_"
    inputs = x
    input_channels = x.shape[-1]
    if spec.expansion != 1:
        x = keras.layers.Conv2D(
            input_channels * spec.expansion, 1, use_bias=False, name=f"{prefix}expand"
        )(x)
        x = _batch_norm(f"{prefix}expand_BN")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    x, padding = _symmetric_padding(x, spec.stride, f"{prefix}depthwise")
    x = keras.layers.DepthwiseConv2D(
        3, strides=spec.stride, padding=padding, use_bias=False, name=f"{prefix}depthwise"
    )(x)
    x = _batch_norm(f"{prefix}depthwise_BN")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(spec.filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _batch_norm(f"{prefix}project_BN")(x)
    if spec.stride == 1 and input_channels == spec.filters:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def _build_keras_imagenet(image_size: int, include_top: bool) -> keras.Model:
    """Keras' stock MobileNetV2 with its own ImageNet weights, fed raw pixels like ours."""
    try:
        stock = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3),
            include_top=include_top,
            weights="imagenet",
            pooling=None if include_top else "avg",
            classifier_activation=None,
        )
    except Exception as error:  # any download failure: HTTP, DNS, proxy, certificate
        raise keras_imagenet_unavailable(error) from error
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_to_unit")(pixels)
    outputs = stock(x)
    return keras.Model(pixels, outputs, name="mobilenetv2_keras_imagenet")


def _load_weights_file(model: keras.Model, resolved: ResolvedWeights) -> None:
    try:
        with warnings.catch_warnings():  # Keras warns per layer before raising; one error is enough
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(resolved.path)
    except (ValueError, OSError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        hint = "delete it to convert again" if resolved.source == "cache" else "check the file"
        raise WeightsError(
            f"{resolved.path}: not a foldervision MobileNetV2 weights file ({reason}); {hint}"
        ) from error


# --------------------------------------------------------------------------------------------
# torchvision state dict -> Keras layers.


def torch_layer_names() -> Iterator[tuple[str, str, str]]:
    """(Keras layer, torch prefix, kind) for every layer with weights, in network order."""
    yield "Conv1", "features.0.0", "conv"
    yield "bn_Conv1", "features.0.1", "batch_norm"
    for spec in block_specs():
        prefix = f"block_{spec.index}_"
        torch_prefix = f"features.{spec.index + 1}.conv"
        steps = [] if spec.expansion == 1 else [("expand", "conv")]
        steps += [("depthwise", "depthwise"), ("project", "conv")]
        for position, (step, kind) in enumerate(steps):
            if step == "project":
                yield f"{prefix}project", f"{torch_prefix}.{position}", kind
                yield f"{prefix}project_BN", f"{torch_prefix}.{position + 1}", "batch_norm"
            else:
                yield f"{prefix}{step}", f"{torch_prefix}.{position}.0", kind
                yield f"{prefix}{step}_BN", f"{torch_prefix}.{position}.1", "batch_norm"
    yield "Conv_1", "features.18.0", "conv"
    yield "Conv_1_bn", "features.18.1", "batch_norm"
    yield "predictions", "classifier.1", "dense"


def convert_torch_state_dict(
    state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
) -> dict[str, list[np.ndarray]]:
    """Map torchvision's tensors to Keras layer weights, using every tensor exactly once."""
    remaining = {
        name: tensor
        for name, tensor in state_dict.items()
        if not name.endswith("num_batches_tracked")
    }
    layer_weights = {}
    for layer_name, torch_prefix, kind in torch_layer_names():
        layer_weights[layer_name] = _convert_layer(remaining, torch_prefix, kind, source)
    if remaining:
        unused = ", ".join(sorted(remaining)[:5])
        raise WeightsError(f"{source}: not torchvision's MobileNetV2, unused tensors: {unused}")
    return layer_weights


def _convert_layer(
    remaining: dict[str, np.ndarray], prefix: str, kind: str, source: str
) -> list[np.ndarray]:
    def take(suffix: str) -> np.ndarray:
        name = f"{prefix}.{suffix}"
        if name not in remaining:
            raise WeightsError(f"{source}: not torchvision's MobileNetV2, missing tensor {name}")
        return remaining.pop(name).astype(np.float32)

    if kind == "conv":  # torch OIHW -> Keras HWIO
        return [take("weight").transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # torch [C, 1, kh, kw] -> Keras [kh, kw, C, 1]
        return [take("weight").transpose(2, 3, 0, 1)]
    if kind == "dense":  # torch [out, in] -> Keras [in, out]
        return [take("weight").T, take("bias")]
    return [take("weight"), take("bias"), take("running_mean"), take("running_var")]


def assign_layer_weights(
    model: keras.Model, layer_weights: Mapping[str, list[np.ndarray]], source: str = "weights"
) -> None:
    """Set every weighted layer of `model` from `layer_weights`, checking names and shapes."""
    weighted_layers = [layer for layer in model.layers if layer.weights]
    missing = [layer.name for layer in weighted_layers if layer.name not in layer_weights]
    if missing:
        raise WeightsError(f"{source}: no weights for layers {', '.join(missing[:5])}")
    unused = sorted(set(layer_weights) - {layer.name for layer in weighted_layers})
    if unused:
        raise WeightsError(f"{source}: weights for layers the model lacks: {', '.join(unused)}")
    for layer in weighted_layers:
        expected = [tuple(weight.shape) for weight in layer.get_weights()]
        given = [tuple(array.shape) for array in layer_weights[layer.name]]
        if expected != given:
            raise WeightsError(f"{source}: layer {layer.name} expects {expected}, got {given}")
        layer.set_weights(layer_weights[layer.name])


def build_mobilenetv2_with_torch_weights(
    state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
) -> keras.Model:
    """The 224-pixel model with head, holding a converted torchvision state dict."""
    model = _build_symmetric_mobilenetv2(224, include_top=True)
    assign_layer_weights(model, convert_torch_state_dict(state_dict, source), source)
    return model
