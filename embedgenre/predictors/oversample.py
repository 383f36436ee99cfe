"""MLSMOTE-style oversampling of rare genres in embedding space (Charte et al. 2015), in numpy.

A genre is a minority genre when its imbalance ratio (count of the most frequent genre / its
count) is above the mean ratio. For each item of a minority genre a synthetic item is placed on
the great-circle-ish segment towards one of its ``k`` nearest same-genre neighbours (interpolated,
then re-normalised), and its genres are those carried by at least half of the item and its
neighbours (the minority genre always included).
"""

from __future__ import annotations

import numpy as np


def minority_genres(Y: np.ndarray) -> np.ndarray:
    """Indices of genres whose imbalance ratio exceeds the mean (genres with 0 items ignored)."""
    counts = Y.sum(axis=0).astype(np.float64)
    present = counts > 0
    if not present.any():
        return np.zeros(0, dtype=np.int64)
    ir = np.where(present, counts.max() / np.maximum(counts, 1), 0.0)
    return np.flatnonzero(present & (ir > ir[present].mean()))


def mlsmote(
    X: np.ndarray, Y: np.ndarray, k: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic items for the minority genres: returns (X_new float32 (m, d), Y_new uint8 (m, g)).

    ``X`` (n, d) L2-normalised, ``Y`` (n, g) multi-hot. One synthetic item per (minority genre,
    item of that genre); nothing is generated for a genre with fewer than 2 items.
    """
    rng = np.random.default_rng(seed)
    new_x, new_y = [], []
    for label in minority_genres(Y):
        members = np.flatnonzero(Y[:, label])
        if len(members) < 2:
            continue
        kk = min(k, len(members) - 1)
        Xm = X[members]
        sims = Xm @ Xm.T
        np.fill_diagonal(sims, -np.inf)
        nbrs = np.argsort(-sims, axis=1)[:, :kk]  # (m, kk) positions within members
        pick = nbrs[np.arange(len(members)), rng.integers(0, kk, size=len(members))]
        gap = rng.random((len(members), 1)).astype(np.float32)
        x = Xm + gap * (Xm[pick] - Xm)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        votes = Y[members].astype(np.int32) + Y[members][nbrs].sum(axis=1)
        y = (votes * 2 >= kk + 1).astype(np.uint8)
        y[:, label] = 1
        new_x.append(x.astype(np.float32))
        new_y.append(y)
    if not new_x:
        return np.zeros((0, X.shape[1]), np.float32), np.zeros((0, Y.shape[1]), np.uint8)
    return np.concatenate(new_x), np.concatenate(new_y)
