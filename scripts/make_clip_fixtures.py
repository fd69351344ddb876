"""Make tests/clip/fixtures: a tiny random OpenCLIP model and OpenCLIP's own outputs for it.

    python scripts/make_clip_fixtures.py        # in an environment with torch and open_clip_torch

Run once, in a separate environment (foldervision's own never has torch); the tests then check
foldervision's tokenizer, preprocessing and ONNX runtime against what this recorded:

- tiny-clip/: the model folder written by scripts/export_clip.py for a randomly initialised
  OpenCLIP CLIP of the real architecture (ViT image tower, causal text transformer, both
  2 layers wide 32) with a vocabulary of OpenAI's first 500 merges (so the token table is small);
- strings.json: about a thousand texts (accents, CJK, emoji, punctuation, HTML entities,
  mojibake, control and zero-width characters, empty, whitespace, longer than the context);
- reference.npz: OpenCLIP's token ids for every string with the full OpenAI vocabulary
  (`tokens_openai`) and with the tiny one (`tokens_tiny`), the tiny model's normalised text
  embeddings (`text_embeddings`), and its normalised image embeddings (`image_embeddings`) of
  images/ as OpenCLIP's evaluation transform prepares them from `PIL.Image.open(file)`;
- images/: three of the repository's sample digits and three generated RGB images of odd sizes.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "src"))

FIXTURES = REPO / "tests" / "clip" / "fixtures"
TINY_MERGES = 500
SEED = 20240
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.2613026, 0.2757771)

HAND_WRITTEN = [
    "",
    " ",
    "   ",
    "\t\n ",
    "\u3000",
    "a",
    "A",
    "a photo of a dog.",
    "A Photo Of A DOG",
    "a red flower on grass",
    "receipt",
    "daisy",
    "tulip",
    "sunflower",
    "dandelion",
    "rose",
    "café crème brûlée",
    "naïve façade",
    "Ünïcödé",
    "Straße",
    "Æsir Ørsted Åland",
    "œuvre",
    "niño jalapeño",
    "résumé",
    "Zürich",
    "São Paulo",
    "Kraków",
    "İstanbul",
    "ǅungla",
    "東京の桜",
    "北京烤鸭",
    "日本語のテキスト",
    "한국어 문장",
    "中文，标点。",
    "ｶﾀｶﾅ",
    "Привет, мир!",
    "Ελληνικά γράμματα",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Tiếng Việt có dấu",
    "ქართული",
    "Հայերեն",
    "ትግርኛ",
    "🌸🌼🌻",
    "👨‍👩‍👧‍👦 family",
    "🇫🇷🇯🇵",
    "👍🏽 ok",
    "❤️",
    "a🐶b",
    "🙂🙃😉",
    "☕ coffee",
    "!!!",
    "???",
    "...",
    "?!?!",
    "—–-",
    "«guillemets»",
    "¿qué?",
    "¡hola!",
    "(parens)",
    "[brackets]",
    "{braces}",
    "a/b\\c",
    "50%",
    "#sunset",
    "@user",
    "$100,000.00",
    "€5 £3 ¥9",
    "don't",
    "it's",
    "I'M",
    "we'll",
    "they'd",
    "you've",
    "she's",
    "'quoted'",
    "DON'T STOP",
    "“smart” ‘quotes’",
    "it’s curly",
    "ﬁne ﬂower",
    "ＡＢＣ１２３ｘｙｚ",
    "Ⅻ ½ ² ③",
    "&amp;",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&quot;hi&quot;",
    "&amp;amp;",
    "&#39;",
    "&eacute;t&eacute;",
    "&#x1F600;",
    "Tom &amp; Jerry",
    "cafÃ©",
    "Ã©tÃ©",
    "doesnâ€™t",
    "\x00null",
    "bell\x07",
    "a\u200bb",
    "a\u00a0b",
    "e\u0301",
    "n\u0303o",
    "\ufeffbom",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "1234567890",
    "3.14159",
    "1,000,000",
    "2024-06-01",
    "12:30pm",
    "https://example.com/a?b=c&d=e",
    "user@example.org",
    "C:\\Users\\photo.jpg",
    "x=y+z",
    "<start_of_text>",
    "<end_of_text>",
    "<|endoftext|>",
    "<START_OF_TEXT> hi",
    "a" * 300,
    "supercalifragilisticexpialidocious " * 6,
    "photo " * 80,
    "東" * 120,
    "🌸" * 90,
    "the quick brown fox jumps over the lazy dog " * 4,
]

WORDS = [
    "photo",
    "of",
    "a",
    "the",
    "dog",
    "cat",
    "flower",
    "grass",
    "red",
    "blue",
    "sky",
    "beach",
    "mountain",
    "receipt",
    "car",
    "tree",
    "snow",
    "night",
    "city",
    "portrait",
    "selfie",
    "food",
    "pizza",
    "daisy",
    "tulip",
    "rose",
    "sunflower",
    "dandelion",
    "bird",
    "river",
    "bridge",
    "café",
    "crème",
    "jalapeño",
    "naïve",
    "Straße",
    "東京",
    "桜",
    "烤鸭",
    "한국",
    "мир",
    "γάτα",
    "🌸",
    "🐶",
    "👍🏽",
    "🇫🇷",
    "&amp;",
    "&lt;",
    "&quot;",
    "“",
    "”",
    "’",
    "...",
    "!",
    "?",
    ",",
    "don't",
    "it's",
    "I'M",
    "42",
    "3.5",
    "100%",
    "#tag",
    "@me",
    "ﬁ",
    "ＡＢ",
    "½",
    "\u200b",
    "\u00a0",
    "\t",
    "  ",
    "e\u0301",
    "cafÃ©",
    "A",
    "PHOTO",
    "Flower",
    "x" * 40,
]


def random_strings(count: int, rng: random.Random) -> list[str]:
    """Mixes of the word pool joined by varied whitespace; some far past 77 tokens."""
    strings = []
    for _ in range(count):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 90])
        separators = [" ", " ", " ", "", "  ", "\n", "-", "_"]
        words = [rng.choice(WORDS) for _ in range(length)]
        text = ""
        for word in words:
            text += word + rng.choice(separators)
        if rng.random() < 0.3:
            text = text.upper() if rng.random() < 0.5 else text.title()
        strings.append(text.strip() if rng.random() < 0.5 else text)
    return strings


def tiny_vocabulary(path: Path) -> Path:
    """OpenAI's merges file cut to its first TINY_MERGES merges (header line kept)."""
    from open_clip.tokenizer import default_bpe

    with gzip.open(default_bpe()) as merges:
        lines = merges.read().decode("utf-8").split("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as file:
        file.write("\n".join(lines[: TINY_MERGES + 1]).encode("utf-8"))
    return path


def tiny_model(vocabulary_size: int):  # type: ignore[no-untyped-def]
    import open_clip
    import torch
    from open_clip.model import set_model_preprocess_cfg

    torch.manual_seed(SEED)
    vision = {"image_size": 64, "patch_size": 16, "width": 32, "layers": 2, "head_width": 16}
    text = {
        "context_length": 77,
        "vocab_size": vocabulary_size,
        "width": 32,
        "heads": 2,
        "layers": 2,
    }
    model = open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()
    set_model_preprocess_cfg(
        model,
        {
            "size": 64,
            "mean": OPENAI_MEAN,
            "std": OPENAI_STD,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    )
    return model


def make_images(folder: Path) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    digits = REPO / "samples" / "digits" / "train"
    paths = []
    for digit, name in [(0, "digit0.png"), (1, "digit1.png"), (2, "digit2.png")]:
        source = sorted((digits / str(digit)).glob("*.png"))[0]
        shutil.copyfile(source, folder / name)
        paths.append(folder / name)
    rng = np.random.default_rng(SEED)
    for name, (width, height) in [
        ("wide.png", (97, 61)),
        ("tall.jpg", (50, 121)),
        ("large.jpg", (300, 220)),
    ]:
        x = np.linspace(0, 1, width)[None, :, None]
        y = np.linspace(0, 1, height)[:, None, None]
        base = np.concatenate([x * np.ones_like(y), y * np.ones_like(x), x * y], axis=2)
        noise = rng.normal(0, 0.08, (height, width, 3))
        pixels = np.clip(255 * (base + noise), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name, quality=90)
        paths.append(folder / name)
    return paths


def main() -> None:
    import open_clip
    import torch
    from export_clip import write_model_folder
    from PIL import Image

    if FIXTURES.exists():
        shutil.rmtree(FIXTURES)
    vocabulary = tiny_vocabulary(FIXTURES / "work" / "vocab.txt.gz")
    tiny_tokenizer = open_clip.SimpleTokenizer(bpe_path=str(vocabulary))
    model = tiny_model(tiny_tokenizer.vocab_size)
    write_model_folder(
        model,
        "tiny-clip",
        FIXTURES / "tiny-clip",
        {
            "model": "tiny random ViT, see scripts/make_clip_fixtures.py",
            "pretrained": "none",
            "seed": SEED,
        },
        vocabulary,
    )
    shutil.rmtree(FIXTURES / "work")

    rng = random.Random(SEED)
    strings = HAND_WRITTEN + random_strings(1000 - len(HAND_WRITTEN), rng)
    (FIXTURES / "strings.json").write_text(json.dumps(strings, indent=0) + "\n")
    tokens_openai = open_clip.tokenize(strings).numpy()
    tokens_tiny = tiny_tokenizer(strings).numpy()

    images = make_images(FIXTURES / "images")
    from open_clip.transform import PreprocessCfg, image_transform_v2

    preprocess = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
    transform = image_transform_v2(preprocess, is_train=False)
    with torch.no_grad():
        pixels = torch.stack([transform(Image.open(path)) for path in images])
        image_embeddings = model.encode_image(pixels, normalize=True).numpy()
        text_embeddings = model.encode_text(torch.from_numpy(tokens_tiny), normalize=True).numpy()
    np.savez_compressed(
        FIXTURES / "reference.npz",
        image_names=np.array([path.name for path in images]),
        image_embeddings=image_embeddings.astype(np.float32),
        tokens_openai=tokens_openai.astype(np.int32),
        tokens_tiny=tokens_tiny.astype(np.int32),
        text_embeddings=text_embeddings.astype(np.float32),
    )
    print(
        f"wrote {FIXTURES}: {len(strings)} strings, {len(images)} images, "
        f"open_clip {open_clip.__version__}, torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()
