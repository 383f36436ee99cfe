"""Multi-label metrics, all computed by :mod:`sklearn.metrics` (none hand-rolled).

Shapes: ``Y_true`` and ``Y_pred`` are 0/1 arrays (n_items, n_genres); ``scores`` are floats of the
same shape (higher = more likely), used only for the ranking metric (mAP).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from embedgenre.predictors.metrics import mean_average_precision

logger = logging.getLogger(__name__)

#: Summary metric names, in the order tables show them.
METRIC_NAMES: tuple[str, ...] = (
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "weighted_f1",
    "map",
    "hamming_loss",
    "label_accuracy",
    "subset_accuracy",
)


def _check(Y_true: np.ndarray, other: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    Y_true = np.asarray(Y_true)
    other = np.asarray(other)
    if Y_true.ndim != 2 or other.shape != Y_true.shape:
        raise ValueError(
            f"{what} must have the shape of the true labels {Y_true.shape} "
            f"(n_items, n_genres), got {other.shape}."
        )
    return Y_true, other


def summary_metrics(
    Y_true: np.ndarray, Y_pred: np.ndarray, scores: np.ndarray | None = None
) -> dict[str, float]:
    """Every summary metric of :data:`METRIC_NAMES` for one predictor on one test set.

    F1 scores use ``zero_division=0`` (a genre never predicted and never present scores 0, as
    in the research papers); ``map`` is NaN when there are no scores.
    ``label_accuracy`` is 1 - Hamming loss, what much of the literature calls "accuracy".
    """
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    Y_true, Y_pred = _check(Y_true, Y_pred, "predictions")
    Y_true = Y_true.astype(np.int64)
    Y_pred = Y_pred.astype(np.int64)
    out: dict[str, float] = {}
    for avg in ("micro", "macro", "samples", "weighted"):
        out[f"{avg}_f1"] = float(f1_score(Y_true, Y_pred, average=avg, zero_division=0))
    out["map"] = mean_average_precision(Y_true, scores) if scores is not None else math.nan
    out["hamming_loss"] = float(hamming_loss(Y_true, Y_pred))
    out["label_accuracy"] = 1.0 - out["hamming_loss"]
    out["subset_accuracy"] = float(accuracy_score(Y_true, Y_pred))
    return out


def per_genre_metrics(
    Y_true: np.ndarray, Y_pred: np.ndarray, genres: list[str]
) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1 and support (test positives) of each genre, in vocabulary order."""
    from sklearn.metrics import precision_recall_fscore_support

    Y_true, Y_pred = _check(Y_true, Y_pred, "predictions")
    if len(genres) != Y_true.shape[1]:
        raise ValueError(f"Got {len(genres)} genre names for {Y_true.shape[1]} label columns.")
    p, r, f, s = precision_recall_fscore_support(
        Y_true.astype(np.int64), Y_pred.astype(np.int64), average=None, zero_division=0
    )
    return [
        {
            "genre": g,
            "precision": float(p[j]),
            "recall": float(r[j]),
            "f1": float(f[j]),
            "support": int(s[j]),
        }
        for j, g in enumerate(genres)
    ]


def micro_pr_curve(Y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Micro-averaged precision-recall curve: (precision, recall, average precision)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    Y_true, scores = _check(Y_true, scores, "scores")
    y = Y_true.ravel().astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).ravel()
    precision, recall, _ = precision_recall_curve(y, s)
    return precision, recall, float(average_precision_score(y, s))
