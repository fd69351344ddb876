"""Write a CLIP model folder (see foldervision.clip.model_folder) from any OpenCLIP model.

    python scripts/export_clip.py MODEL PRETRAINED OUT_DIR
    python scripts/export_clip.py ViT-B-32 openai models/clip-vit-b32
    python scripts/export_clip.py ViT-B-32 none /tmp/vit-b32-random   # random weights

Run it where torch, open_clip_torch (and for PRETRAINED weights, the internet) are available;
foldervision itself never imports torch. The image and text towers are exported separately,
each with a dynamic batch dimension; config.json records the preprocessing OpenCLIP uses for
the model (size, mean, std, interpolation) and its context length, and SHA256SUMS the files.
Only the default OpenCLIP tokenizer (OpenAI's BPE) is supported: models with a Hugging Face
tokenizer (SigLIP, ...) are refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

OPSET = 17


def export_towers(model: Any, image_size: int, context_length: int, out_dir: Path) -> None:
    """image.onnx and text.onnx: OpenCLIP's `encode_image` and `encode_text`, not normalised."""
    import torch

    torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX export
    model.eval()
    pixels = torch.randn(2, 3, image_size, image_size)
    tokens = torch.zeros(2, context_length, dtype=torch.int64)
    tokens[:, 0], tokens[:, 1] = model.vocab_size - 2, model.vocab_size - 1  # start, end
    towers = [
        (Tower(model.encode_image), pixels, "pixels", "image_features", "image.onnx"),
        (Tower(model.encode_text), tokens, "tokens", "text_features", "text.onnx"),
    ]
    for tower, example, input_name, output_name, file_name in towers:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                tower,
                (example,),
                str(out_dir / file_name),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )


def Tower(encode: Any) -> Any:  # noqa: N802 - builds a module, named like one
    """A module whose forward is one of the model's encoders (what torch.onnx traces)."""
    import torch

    class EncoderModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owner = encode.__self__

        def forward(self, inputs: Any) -> Any:
            return encode(inputs)

    return EncoderModule()


def write_model_folder(
    model: Any,
    name: str,
    out_dir: Path,
    source: dict[str, Any],
    vocabulary: Path | None = None,
) -> dict[str, Any]:
    """Export both towers of an OpenCLIP model and write config.json and SHA256SUMS."""
    import open_clip

    from foldervision.clip.model_folder import ClipConfig, write_manifest

    preprocess = open_clip.get_model_preprocess_cfg(model)
    image_size = _side(preprocess["size"])
    context_length = int(model.context_length)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_towers(model, image_size, context_length, out_dir)
    if vocabulary is not None:
        shutil.copyfile(vocabulary, out_dir / "vocab.txt.gz")
    config = ClipConfig(
        name=name,
        image_size=image_size,
        mean=tuple(preprocess["mean"]),
        std=tuple(preprocess["std"]),
        interpolation=preprocess.get("interpolation", "bicubic"),
        resize_mode=preprocess.get("resize_mode", "shortest"),
        context_length=context_length,
        embed_dim=int(model.text_projection.shape[-1]),
        logit_scale=float(model.logit_scale.exp().item()),
        vocabulary="vocab.txt.gz" if vocabulary is not None else None,
        source={**source, "open_clip_version": open_clip.__version__},
    )
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    write_manifest(out_dir)
    return config.to_dict()


def _side(size: Any) -> int:
    if isinstance(size, int):
        return size
    height, width = size
    if height != width:
        raise SystemExit(f"non-square input {size} is not supported by the model folder")
    return int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="OpenCLIP model name, e.g. ViT-B-32")
    parser.add_argument(
        "pretrained",
        help="OpenCLIP pretrained tag (openai, laion2b_s34b_b79k, ...), or none for random weights",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", help="the name in config.json (default: MODEL-PRETRAINED)")
    arguments = parser.parse_args()

    import open_clip

    model_config = open_clip.get_model_config(arguments.model)
    if model_config is None:
        raise SystemExit(f"{arguments.model}: not an OpenCLIP model name")
    tokenizer_name = model_config["text_cfg"].get("hf_tokenizer_name")
    if tokenizer_name:
        raise SystemExit(f"{arguments.model} uses the {tokenizer_name} tokenizer; not supported")
    pretrained = None if arguments.pretrained == "none" else arguments.pretrained
    model = open_clip.create_model(arguments.model, pretrained=pretrained)
    name = arguments.name or f"{arguments.model}-{arguments.pretrained}".lower()
    source = {"model": arguments.model, "pretrained": arguments.pretrained}
    config = write_model_folder(model, name, arguments.out_dir, source)
    print(json.dumps(config, indent=2))


if __name__ == "__main__":
    main()
