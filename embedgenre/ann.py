"""FAISS indexes over L2-normalised float32 vectors (inner product = cosine)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def build_faiss_index(vectors: np.ndarray, kind: str = "auto"):
    """Build a FAISS index over ``vectors`` (n, d) float32; returns (index, kind used)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind not in ("auto", "flat"):
        raise ValueError(f"Unknown FAISS index kind {kind!r}; expected 'auto' or 'flat'.")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index, "flat"


def save_faiss_index(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load_faiss_index(path: Path):
    import faiss

    return faiss.read_index(str(path))
