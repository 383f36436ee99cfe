"""Few-shot training samples: k labelled examples per genre from a multi-label training set.

How a k-per-genre sample is drawn (multi-label makes "k per class" ambiguous, so this is the rule):

1. Visit the genres from the rarest to the most frequent (in the training rows given).
2. For each genre, count the movies already in the sample that carry it. While the count is below
   ``k`` (or below the genre's training count, if that is smaller), add a movie carrying the genre,
   drawn at random (seeded) from those not yet sampled.
3. Every genre then has at least ``min(k, its training count)`` examples; common genres usually
   have more, because movies picked for rare genres carry them too. That is the label distribution
   a person labelling "k posters per genre" would end up with.

``k = None`` ("all") returns every training row.
"""

from __future__ import annotations

import numpy as np


def parse_shots(text: str) -> list[int | None]:
    """Parse ``"1,2,4,all"`` into ``[1, 2, 4, None]`` (None = all training data), sorted, unique."""
    values: list[int | None] = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            values.append(None)
            continue
        try:
            k = int(part)
        except ValueError:
            raise ValueError(
                f"Bad shot count {part!r} in --shots {text!r}; use positive integers and 'all', "
                "e.g. --shots 1,2,4,8,16,32,all."
            ) from None
        if k < 1:
            raise ValueError(
                f"Shot counts must be >= 1 (k = 0 is zero-shot, drawn anyway); got {k}."
            )
        values.append(k)
    ints = sorted({v for v in values if v is not None})
    return ints + ([None] if None in values else [])


def sample_k_per_genre(Y: np.ndarray, k: int | None, seed: int = 0) -> np.ndarray:
    """Rows of ``Y`` (n, g) 0/1 forming a k-per-genre sample (see module doc); sorted int64."""
    Y = np.asarray(Y)
    n = Y.shape[0]
    if k is None:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    counts = Y.sum(axis=0)
    chosen = np.zeros(n, dtype=bool)
    have = np.zeros(Y.shape[1], dtype=np.int64)
    for g in np.argsort(counts, kind="stable"):
        need = min(k, int(counts[g])) - int(have[g])
        if need <= 0:
            continue
        pool = np.flatnonzero((Y[:, g] > 0) & ~chosen)
        picked = rng.choice(pool, size=min(need, pool.size), replace=False)
        chosen[picked] = True
        have += Y[picked].sum(axis=0).astype(np.int64)
    return np.flatnonzero(chosen).astype(np.int64)
