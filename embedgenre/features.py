"""The input of every head, built in one place: a modality's vectors, or ``[poster | plot]``.

A head scores one modality (its embedding set's vectors) or both: the poster vector and the plot
vector side by side, with zeros where an item lacks one (a movie without a plot, a poster that
could not be read). Training (:mod:`embedgenre.heads.training`), prediction
(:mod:`embedgenre.predict`) and evaluation all build their inputs with :func:`head_input`, so a
head always sees the same kind of input it was fitted on.
"""

from __future__ import annotations

import numpy as np

from embedgenre.errors import PredictorError

__all__ = ["head_input", "set_input"]


def head_input(
    modality: str,
    dims: dict[str, int],
    poster: np.ndarray | None,
    plot: np.ndarray | None,
    n: int,
) -> np.ndarray:
    """float32 (n, d): the input of a head of ``modality`` ("poster", "plot" or "both").

    ``dims``: {modality: dim} of the head's embedding sets. ``poster`` / ``plot``: (n, dim)
    vectors, rows of zeros (or None for all rows) where an item lacks that modality.
    """
    if modality == "both":
        dp, dt = int(dims["poster"]), int(dims["plot"])
        X = np.zeros((n, dp + dt), dtype=np.float32)
        if poster is not None:
            X[:, :dp] = poster
        if plot is not None:
            X[:, dp:] = plot
        return X
    vecs = poster if modality == "poster" else plot
    if vecs is None:
        raise PredictorError(f"this head needs a {modality} input; none was given.")
    return np.ascontiguousarray(vecs, dtype=np.float32)


def set_input(labels: np.ndarray, sets: dict, rows: np.ndarray | None = None):
    """(X float32 (m, d), Y (m, g), item rows int64 (m,)) from stored embedding sets.

    ``sets``: {modality: EmbeddingSet} of a head (one modality, or poster and plot). ``rows``:
    the items to take (default: every item with a vector in any of the sets), in that order.
    """
    if rows is None:
        rows = np.unique(np.concatenate([np.asarray(s.rows) for s in sets.values()]))
    rows = np.asarray(rows, dtype=np.int64)
    per: dict[str, np.ndarray] = {}
    has = np.zeros(len(rows), dtype=bool)
    for modality, s in sets.items():
        pos = {int(r): i for i, r in enumerate(s.rows)}
        take = np.array([pos.get(int(r), -1) for r in rows], dtype=np.int64)
        V = np.zeros((len(rows), s.dim), dtype=np.float32)
        ok = take >= 0
        V[ok] = np.asarray(s.vectors)[take[ok]]
        per[modality] = V
        has |= ok
    if len(sets) == 1 and not has.all():
        raise PredictorError("some of the rows asked for have no vector in this embedding set.")
    modality = "both" if len(sets) == 2 else next(iter(sets))
    dims = {m: s.dim for m, s in sets.items()}
    X = head_input(modality, dims, per.get("poster"), per.get("plot"), len(rows))
    return X, labels[rows], rows
