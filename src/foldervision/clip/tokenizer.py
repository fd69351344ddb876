"""Text to CLIP token ids, exactly as OpenCLIP's `SimpleTokenizer` (the "lower" cleaning) does.

The steps, in OpenCLIP's order: ftfy repairs the text (mojibake, curly quotes, full-width
letters), HTML entities are unescaped twice, runs of whitespace become one space, the text is
lower-cased and split by OpenCLIP's pattern; each piece's UTF-8 bytes are mapped to printable
characters and merged by byte-pair encoding; start and end tokens go around the ids, a text
longer than the context is cut with its last id replaced by the end token, and the rest is
zeros. ftfy and regex are the libraries OpenCLIP itself uses for the first and the split
steps: reimplementing either would drift from the reference on some input.

The merges file is OpenAI's (MIT), shipped in this package; tests/clip checks the ids against
OpenCLIP's on about a thousand strings.
"""

from __future__ import annotations

import functools
import gzip
import html
from importlib import resources
from pathlib import Path

import numpy as np

DEFAULT_VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"
"""OpenAI CLIP's merges, used by every OpenCLIP model with the default tokenizer."""
DEFAULT_VOCABULARY_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
MERGE_COUNT = 49152 - 256 - 2
"""How many merges OpenCLIP reads (its vocabulary is 49,408 ids: bytes, merges, 2 specials)."""
START_TOKEN = "<start_of_text>"
END_TOKEN = "<end_of_text>"
WORD_END = "</w>"
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def packaged_vocabulary() -> Path:
    """The merges file shipped in this package (OpenAI's, unchanged)."""
    return Path(str(resources.files("foldervision.clip") / "data" / DEFAULT_VOCABULARY))


@functools.lru_cache(maxsize=1)
def byte_characters() -> dict[int, str]:
    """Each byte -> a printable character, so that BPE never sees whitespace or controls."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    characters = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters)))


def clean_text(text: str) -> str:
    """ftfy, HTML unescaped twice, whitespace collapsed, lower case: OpenCLIP's "lower"."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """OpenCLIP's tokenizer for one merges file and context length."""

    def __init__(self, vocabulary: Path | None = None, context_length: int = 77) -> None:
        import regex

        self.context_length = context_length
        merges = read_merges(vocabulary or packaged_vocabulary())
        pieces = list(byte_characters().values())
        pieces += [piece + WORD_END for piece in pieces]
        pieces += ["".join(merge) for merge in merges]
        pieces += [START_TOKEN, END_TOKEN]
        self.ids = {piece: index for index, piece in enumerate(pieces)}
        self.merge_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.start_id = self.ids[START_TOKEN]
        self.end_id = self.ids[END_TOKEN]
        specials = f"{START_TOKEN}|{END_TOKEN}"
        self.pattern = regex.compile(f"{specials}|{SPLIT_PATTERN}", regex.IGNORECASE)
        self._words: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        """The ids of one text, without start and end tokens or padding."""
        characters = byte_characters()
        ids: list[int] = []
        for piece in self.pattern.findall(clean_text(text)):
            word = "".join(characters[byte] for byte in piece.encode("utf-8"))
            ids.extend(self._word_ids(word))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(len(texts), context_length) int64 ids: start, text, end, zeros; cut as OpenCLIP."""
        tokens = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.end_id
            tokens[row, : len(ids)] = ids
        return tokens

    def _word_ids(self, word: str) -> list[int]:
        if word not in self._words:
            if word in (START_TOKEN, END_TOKEN):
                self._words[word] = [self.ids[word]]
            else:
                self._words[word] = [self.ids[part] for part in self._merge(word)]
        return self._words[word]

    def _merge(self, word: str) -> list[str]:
        """Byte-pair merges, lowest rank first, until none applies (OpenCLIP's `bpe`)."""
        parts = [*word[:-1], word[-1] + WORD_END]
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda pair: self.merge_ranks.get(pair, float("inf")))
            if best not in self.merge_ranks:
                break
            parts = merge_pair(parts, best)
        return parts


def merge_pair(parts: list[str], pair: tuple[str, str]) -> list[str]:
    """Join every non-overlapping occurrence of `pair`, left to right."""
    merged: list[str] = []
    index = 0
    while index < len(parts):
        if index < len(parts) - 1 and (parts[index], parts[index + 1]) == pair:
            merged.append(parts[index] + parts[index + 1])
            index += 2
        else:
            merged.append(parts[index])
            index += 1
    return merged


def read_merges(path: Path) -> list[tuple[str, str]]:
    """The merges of a gzip'd BPE file: line 1 is a header, then one "a b" pair per line."""
    with gzip.open(path) as file:
        lines = file.read().decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]  # type: ignore[misc]
