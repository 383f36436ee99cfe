"""Test predictions and their scores: one summary row and per-genre rows per test subset.

An :class:`Output` holds what one (method, modality, encoder) predicted for the test items it
covers. Plot and fusion outputs cover only items with a plot; :func:`with_fallback` extends them
to every test item with the same method's poster output, so every row of the "all" table scores
the same items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedgenre.evaluate.metrics import per_genre_metrics, summary_metrics


@dataclass
class Output:
    """Predictions of one (method, modality, encoder) on the test items it covers."""

    items: np.ndarray  # int64 (m,), item positions (sorted)
    P: np.ndarray  # float (m, g) scores
    D: np.ndarray  # uint8 (m, g) decisions
    has_scores: bool = True
    fit_s: float = 0.0
    predict_s: float = 0.0

    def take(self, items: np.ndarray) -> Output:
        """The predictions of ``items`` (sorted positions, each covered by this output)."""
        pos = np.searchsorted(self.items, items)
        if (pos >= len(self.items)).any() or (
            self.items[np.minimum(pos, len(self.items) - 1)] != items
        ).any():
            raise ValueError("requested items the output does not cover")
        return Output(items, self.P[pos], self.D[pos], self.has_scores, self.fit_s, self.predict_s)


def with_fallback(out: Output, fallback: Output | None, test: np.ndarray) -> Output | None:
    """``out`` extended to every item of ``test``: the items it lacks take ``fallback``'s
    predictions. None when it lacks some and there is no fallback."""
    if len(out.items) == len(test):
        return out
    if fallback is None:
        return None
    rest = np.setdiff1d(test, out.items)
    fb = fallback.take(rest)
    items = np.concatenate([out.items, rest])
    order = np.argsort(items, kind="stable")
    return Output(
        items[order],
        np.vstack([out.P, fb.P])[order],
        np.vstack([out.D, fb.D])[order],
        out.has_scores and fb.has_scores,
        out.fit_s,
        out.predict_s,
    )


def score(
    key: tuple[str, str, str], out: Output, Y: np.ndarray, genres: list[str], subset: str
) -> tuple[dict, list[dict]]:
    """Summary row and per-genre rows of ``out`` against all items' labels ``Y`` (n, g)."""
    Y_out = Y[out.items]
    method, modality, encoder = key
    names = {"method": method, "modality": modality, "encoder": encoder, "subset": subset}
    row = {**names, "n_test": int(len(out.items))}
    row.update(summary_metrics(Y_out, out.D, out.P if out.has_scores else None))
    per_genre = [{**names, **p} for p in per_genre_metrics(Y_out, out.D, genres)]
    return row, per_genre
