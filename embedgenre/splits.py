"""Multi-label splits: iterative stratification of a label matrix into parts or folds.

Every held-out part in embedgenre (evaluate's test and validation split, out-of-fold thresholds)
is drawn here, so each keeps every genre's share close to the whole, rare genres included.
"""

from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit


def iterative_split(
    Y: np.ndarray, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows of a multi-hot label matrix ``Y`` (n, g) into (train, test) row indices.

    Iterative stratification (Sechidis et al. 2011) keeps each genre's share close in both parts,
    rare genres included. Deterministic for a given ``seed``. Indices are sorted int64 arrays.
    """
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Expected a 2D label matrix (n_items, n_genres), got shape {Y.shape}.")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}.")
    n = Y.shape[0]
    if n < 2:
        raise ValueError(f"Need at least 2 items to split, got {n}.")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros((n, 1)), Y))
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def iterative_folds(
    Y: np.ndarray, folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, held-out) row-index pairs whose held-out parts cover every row once,
    each stratified like :func:`iterative_split`. Deterministic for a given ``seed``."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Expected a 2D label matrix (n_items, n_genres), got shape {Y.shape}.")
    if not 2 <= folds <= len(Y):
        raise ValueError(f"folds must be between 2 and the {len(Y)} items, got {folds}.")
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        (np.sort(a).astype(np.int64), np.sort(b).astype(np.int64))
        for a, b in splitter.split(np.zeros((len(Y), 1)), Y)
    ]
