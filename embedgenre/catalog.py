"""Catalog reading and validation, the genre vocabulary, and multi-label splits."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def iterative_split(
    Y: np.ndarray, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows of a multi-hot label matrix ``Y`` (n, g) into (train, test) row indices.

    Iterative stratification (Sechidis et al. 2011) keeps each genre's share close in both parts,
    rare genres included. Deterministic for a given ``seed``. Indices are sorted int64 arrays.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

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
