"""How close an approximate index comes to exact search: brute-force ground truth over vectors
too large for memory, and recall@k against it."""

from __future__ import annotations

import numpy as np

from embedgenre.store.vectors import read_rows


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, step: int = 200_000):
    """Brute-force top-``k`` inner products of ``queries`` over ``vectors`` read ``step`` rows at a
    time (a memory map is never loaded whole): (scores (q, k), ids (q, k) int64), best first."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for start in range(0, len(vectors), step):
        block = read_rows(vectors, start, start + step)
        s = q @ block.T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, keep, axis=1)
        best_i = np.take_along_axis(cand_i, keep, axis=1)
    return best_s, best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k ids among its found ids (both (q, k))."""
    k = truth.shape[1]
    hits = [len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k)
