"""Decision thresholds: one global, one per genre, and the "at least one genre" rule.

Chosen on validation data to maximise a named metric (``micro_f1`` by default); the search
scores candidates from numpy counts (``metrics.f1_fast``, checked equal to :mod:`sklearn.metrics`)
and the chosen thresholds' score is reported by sklearn. Candidates are a fixed grid of probabilities in (0, 1).
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.metrics import METRICS, f1, f1_fast

logger = logging.getLogger(__name__)

MODES = ("global", "per_genre", "fixed")
MIN_SUPPORT = 10  # validation positives a genre needs for its own threshold
GRID = np.round(np.arange(0.02, 0.96, 0.02), 2).astype(np.float32)


def apply_thresholds(P: np.ndarray, thresholds: np.ndarray, at_least_one: bool) -> np.ndarray:
    """Decisions uint8 (n, g): ``P >= thresholds``; with ``at_least_one`` an item with no genre
    above its threshold gets its highest-scoring genre (by margin ``P - threshold``)."""
    P = np.asarray(P, dtype=np.float32)
    thr = np.asarray(thresholds, dtype=np.float32)
    pred = (P >= thr).astype(np.uint8)
    if at_least_one and pred.shape[1]:
        empty = pred.sum(axis=1) == 0
        if empty.any():
            best = np.argmax(P[empty] - thr, axis=1)
            pred[np.flatnonzero(empty), best] = 1
    return pred


def fit_thresholds(
    P: np.ndarray,
    Y: np.ndarray,
    mode: str = "per_genre",
    metric: str = "micro_f1",
    at_least_one: bool | None = None,
    default: float = 0.5,
    min_support: int = MIN_SUPPORT,
) -> tuple[np.ndarray, bool, float]:
    """Choose thresholds for probabilities ``P`` (n, g) against labels ``Y`` (n, g).

    ``mode``: "global" (one value for all genres), "per_genre" (start from the best global value,
    then one pass of per-genre search holding the others fixed, for genres with at least
    ``min_support`` positives in ``Y``; rarer genres keep the global value, since a threshold
    fitted to a handful of items does not carry over), "fixed" (``default`` everywhere).
    ``at_least_one``: True/False, or None to keep whichever scores better.
    Returns (thresholds float32 (g,), at_least_one, validation score).
    """
    if mode not in MODES:
        raise PredictorError(f"Unknown threshold mode {mode!r}; choose one of {', '.join(MODES)}.")
    if metric not in METRICS:
        raise PredictorError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    P = np.asarray(P, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.uint8)
    if P.shape != Y.shape:
        raise PredictorError(f"Probabilities {P.shape} and labels {Y.shape} differ in shape.")
    g = P.shape[1]
    rules = [True, False] if at_least_one is None else [bool(at_least_one)]
    best: tuple[float, np.ndarray, bool] | None = None
    for rule in rules:  # each rule gets its own search; the better one is kept
        thr = np.full(g, default, dtype=np.float32)
        score = f1_fast(Y, apply_thresholds(P, thr, rule), metric)
        if mode != "fixed":
            for t in GRID:
                cand = np.full(g, t, dtype=np.float32)
                s = f1_fast(Y, apply_thresholds(P, cand, rule), metric)
                if s > score:
                    score, thr = s, cand
        if mode == "per_genre":
            for j in np.flatnonzero(Y.sum(axis=0) >= max(1, min_support)):
                for t in GRID:
                    cand = thr.copy()
                    cand[j] = t
                    s = f1_fast(Y, apply_thresholds(P, cand, rule), metric)
                    if s > score:
                        score, thr = s, cand
        if best is None or score > best[0]:
            best = (score, thr, rule)
    _, thr, rule = best
    score = f1(Y, apply_thresholds(P, thr, rule), metric)  # reported by sklearn
    logger.debug("thresholds (%s, %s): %s=%.4f at_least_one=%s", mode, metric, metric, score, rule)
    return thr, rule, score
