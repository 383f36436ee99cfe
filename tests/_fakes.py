"""Stand-ins shared by the tests: a deterministic fake encoder with the Encoder contract, a
factory that remembers what it made, and ``build`` (an index of a catalog folder with them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from embedgenre.catalog import read_catalog
from embedgenre.indexing import build_index


class FakeEncoder:
    """Deterministic stand-in with the Encoder contract: 8-d, image and text, counts calls."""

    family = "fake"
    modalities = ("image", "text")
    dim = 8

    def __init__(self, name: str = "fake:a", dim: int = 8, space: str = "fake"):
        self.name, self.dim, self.space = name, dim, space
        self.images_seen = 0
        self.texts_seen = 0
        rng = np.random.default_rng(0)
        self._proj = rng.standard_normal((3 * 4 * 4, dim)).astype(np.float32)

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return np.asarray(img.convert("RGB").resize((4, 4)), np.float32).transpose(2, 0, 1) / 255

    def encode_pixels(self, batch: np.ndarray) -> np.ndarray:
        self.images_seen += len(batch)
        return _norm(batch.reshape(len(batch), -1) @ self._proj + 1e-3)

    def encode_texts(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.texts_seen += len(texts)
        out = []
        for t in texts:
            seed = int.from_bytes(t.encode()[:8].ljust(8, b"\0"), "little") ^ len(t)
            out.append(np.random.default_rng(seed).standard_normal(self.dim))
        return _norm(np.array(out, np.float32).reshape(-1, self.dim))

    def describe(self) -> dict:
        return {"name": self.name, "family": "fake", "dim": self.dim, "space": self.space}


def _norm(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)


class Factory:
    """encoder_factory for build_index: one FakeEncoder per name, remembered for inspection."""

    def __init__(self, dims: dict[str, int] | None = None):
        self.made: dict[str, FakeEncoder] = {}
        self.dims = dims or {}

    def __call__(self, name: str) -> FakeEncoder:
        enc = FakeEncoder(name, dim=self.dims.get(name, 8))
        self.made[name] = enc
        return enc


def build(root: Path, out: Path, factory: Factory, **kw):
    kw.setdefault("image_encoders", ["fake:a"])
    kw.setdefault("text_encoders", ["fake:t"])
    return build_index(read_catalog(root), out, encoder_factory=factory, **kw)
