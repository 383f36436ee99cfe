"""CLIP's byte-level BPE tokenizer in plain Python + NumPy, for queries without torch.

It reads the same merges file open_clip ships (``bpe_simple_vocab_16e6.txt.gz``, copied into the
export cache beside the ONNX text tower) and gives the same token ids as open_clip's default
tokenizer (lower-cased, whitespace collapsed, ftfy-fixed when ftfy is installed, HTML entities
unescaped), as an int64 array (n, context_length): start token, BPE ids, end token, zeros; a text
longer than the context is cut and ends with the end token.

    tok = ClipBpeTokenizer(Path(".../bpe_simple_vocab_16e6.txt.gz"), context_length=77)
    tok(["a poster of a horror movie"])   # int64 (1, 77)
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import numpy as np

from embedgenre.errors import EmbedgenreError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # merges CLIP uses from the file (its vocabulary is 49408 ids)
START, END = "<start_of_text>", "<end_of_text>"
# word pieces as CLIP splits them: contractions, letter runs, single digits, other symbol runs
_PATTERN = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """Each byte 0..255 -> a printable character (printable Latin-1 bytes map to themselves,
    the rest to code points from 256 up), so BPE works on text with no raw control bytes.
    The order (printable bytes, then the others) is the order of the first 256 vocabulary ids."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _clean(text: str) -> str:
    try:
        import ftfy  # fixes mojibake exactly as open_clip does; optional
    except ImportError:
        ftfy = None
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipBpeTokenizer:
    """Texts -> int64 (n, context_length) CLIP token ids (see the module docstring)."""

    def __init__(self, vocab_path: str | Path, context_length: int = 77) -> None:
        import regex

        path = Path(vocab_path)
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise EmbedgenreError(
                f"CLIP vocabulary {path} cannot be read ({e}); delete the export folder it is in "
                "and run the encoder once with open_clip installed to write it again"
            ) from e
        merges = [tuple(line.split()) for line in lines[1 : MERGES + 1]]
        if len(merges) != MERGES or any(len(m) != 2 for m in merges):
            raise EmbedgenreError(
                f"CLIP vocabulary {path} holds {len(merges)} merges, expected {MERGES} pairs; "
                "it is not open_clip's bpe_simple_vocab_16e6.txt.gz"
            )
        symbols = list(byte_alphabet().values())
        pieces = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        pieces += [START, END]
        self.ids = {p: i for i, p in enumerate(pieces)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.start_id, self.end_id = self.ids[START], self.ids[END]
        self.vocab_size = len(self.ids)
        self.context_length = int(context_length)
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._cache: dict[str, list[int]] = {}
        self._bytes = byte_alphabet()

    def _word_ids(self, word: str) -> list[int]:
        """BPE of one pre-split word (already mapped to the byte alphabet)."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            best, best_rank = -1, len(self.ranks)
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]), best_rank)
                if rank < best_rank:
                    best, best_rank = i, rank
            if best < 0:
                break
            first, second = parts[best], parts[best + 1]
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.ids[p] for p in parts]
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens."""
        out: list[int] = []
        for piece in self._pattern.findall(_clean(text)):
            if piece in (START, END):
                out.append(self.ids[piece])
                continue
            out.extend(self._word_ids("".join(self._bytes[b] for b in piece.encode("utf-8"))))
        return out

    def __call__(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        n = self.context_length
        out = np.zeros((len(texts), n), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > n:
                ids = ids[:n]
                ids[-1] = self.end_id
            out[row, : len(ids)] = ids
        return out
