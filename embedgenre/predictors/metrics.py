"""Validation scores of a multi-label prediction, all from :mod:`sklearn.metrics`."""

from __future__ import annotations

import numpy as np

METRICS = ("micro_f1", "macro_f1", "samples_f1")


def f1(Y: np.ndarray, pred: np.ndarray, metric: str = "micro_f1") -> float:
    """F1 of multi-hot decisions ``pred`` against ``Y`` (both (n, g)); metric in :data:`METRICS`."""
    from sklearn.metrics import f1_score

    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    return float(f1_score(Y, pred, average=metric.split("_")[0], zero_division=0))


def f1_fast(Y: np.ndarray, pred: np.ndarray, metric: str = "micro_f1") -> float:
    """The same value as :func:`f1` (sklearn, ``zero_division=0``) from numpy counts.

    sklearn's ``f1_score`` costs milliseconds per call; the threshold search scores thousands
    of candidates, so it uses this and ``tests/test_predictors.py`` checks both agree.
    """
    Y = Y.astype(bool)
    pred = pred.astype(bool)
    axis = 1 if metric == "samples_f1" else 0
    tp = (Y & pred).sum(axis=axis)
    wrong = (Y ^ pred).sum(axis=axis)  # fp + fn
    if metric == "micro_f1":
        den = 2 * tp.sum() + wrong.sum()
        return float(2 * tp.sum() / den) if den else 0.0
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    den = 2 * tp + wrong
    per = np.divide(2 * tp, den, out=np.zeros(len(den)), where=den > 0)
    return float(per.mean())


def mean_average_precision(Y: np.ndarray, P: np.ndarray) -> float:
    """Macro average precision over the genres that have at least one positive in ``Y``; NaN
    when none has. The one definition of mAP in the library (training, validation, reports)."""
    from sklearn.metrics import average_precision_score

    Y, P = np.asarray(Y), np.asarray(P, dtype=np.float64)
    if Y.ndim != 2 or P.shape != Y.shape:
        raise ValueError(
            f"scores must have the shape of the true labels {Y.shape} (n_items, n_genres), "
            f"got {P.shape}."
        )
    has_pos = Y.sum(axis=0) > 0
    if not has_pos.any():
        return float("nan")
    return float(
        average_precision_score(Y[:, has_pos].astype(np.int64), P[:, has_pos], average="macro")
    )


def scores(Y: np.ndarray, P: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """micro/macro/samples F1 of ``pred`` and mAP of probabilities ``P`` against ``Y``."""
    out = {m: f1(Y, pred, m) for m in METRICS}
    out["map"] = mean_average_precision(Y, P)
    return out
