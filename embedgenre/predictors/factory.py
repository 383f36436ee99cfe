"""One entry point to build and train predictors: :func:`make_predictor` and
:func:`fit_with_validation` (held-out predictions, thresholds and held-out scores in one call)."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import check_Y
from embedgenre.predictors.fusion import choose_late_weight, fit_estimator
from embedgenre.predictors.metrics import scores
from embedgenre.predictors.registry import METHODS, make_predictor, predictor_class
from embedgenre.predictors.thresholds import apply_thresholds, fit_thresholds
from embedgenre.splits import iterative_folds, iterative_split

__all__ = ["DEFAULT_FOLDS", "METHODS", "fit_with_validation", "make_predictor", "predictor_class"]

logger = logging.getLogger(__name__)

DEFAULT_FOLDS = 5  # out-of-fold thresholds (see fit_with_validation)


def fit_with_validation(
    predictor,
    X: np.ndarray,
    Y: np.ndarray,
    classes=None,
    val_size: float = 0.2,
    seed: int = 0,
    threshold: str = "per_genre",
    metric: str = "micro_f1",
    at_least_one: bool | None = None,
    refit: bool = True,
    folds: int | None = None,
    validation=None,
):
    """Fit ``predictor`` on (X, Y) and choose its decision thresholds on held-out predictions.

    ``folds=None``: one validation part (``val_size`` of the rows, iterative stratification with
    ``seed``, or the rows ``validation`` when given) is held out; the model fitted on the rest
    scores it, and those scores choose the thresholds, early stopping (MLP) and the late-fusion
    weight. With ``refit`` the model is then fitted again on all rows, keeping what validation
    chose: more data gives better probabilities.

    ``folds=K``: out-of-fold predictions. K models, each fitted without one fold, score that
    fold, so every row is scored once by a model that did not see it; the thresholds are chosen
    on all of them (K times the validation data of one split, so steadier thresholds), and the
    model is fitted on all rows with the median of the folds' MLP epoch counts. A late-fusion
    weight is chosen on the out-of-fold poster and plot predictions. Costs K + 1 fits.

    Sets ``predictor.validation_`` to {micro_f1, macro_f1, samples_f1, map, n_train, n_val} (and
    ``folds``): the held-out scores; ``predictor.heldout_`` to (rows, probabilities) of the
    held-out predictions. Returns the fitted predictor.
    """
    X = np.asarray(X, dtype=np.float32)
    Y = check_Y(Y, len(X))
    if len(X) < 5:
        raise PredictorError(
            f"Need at least 5 labelled items to carve a validation split, got {len(X)}."
        )
    if folds is not None and validation is None:
        if not 2 <= folds <= len(X) // 2:
            raise PredictorError(
                f"folds must be between 2 and half the {len(X)} training items, got {folds}."
            )
        return _fit_out_of_fold(
            predictor, X, Y, classes, folds, seed, threshold, metric, at_least_one
        )
    if validation is None:
        tr, va = iterative_split(Y, test_size=val_size, seed=seed)
    else:
        va = np.unique(np.asarray(validation, dtype=np.int64))
        if not len(va) or va[0] < 0 or va[-1] >= len(X) or len(va) == len(X):
            raise PredictorError(
                "validation must name some, not all, of the rows of X (0-based indices)."
            )
        tr = np.setdiff1d(np.arange(len(X)), va)
    with _quiet_parts():
        fit_estimator(predictor, X[tr], Y[tr], classes, X[va], Y[va])
    P = predictor.predict_proba(X[va])
    _set_thresholds(predictor, P, Y[va], threshold, metric, at_least_one, n_train=len(tr))
    predictor.heldout_ = (va, P)
    if refit:
        refit_all(predictor, X, Y)
    return predictor


def _set_thresholds(predictor, P, Y, threshold, metric, at_least_one, n_train, **extra) -> None:
    """Choose thresholds on held-out scores ``P`` and record the held-out scores."""
    thr, rule, _ = fit_thresholds(P, Y, mode=threshold, metric=metric, at_least_one=at_least_one)
    predictor.set_thresholds(thr, rule)
    predictor.validation_ = {
        **scores(Y, P, apply_thresholds(P, thr, rule)),
        "n_train": int(n_train),
        "n_val": int(len(Y)),
        **extra,
    }


def _chosen_on_validation(predictor) -> dict:
    """What a fit with validation data chose: the MLP epoch count or the late-fusion weight."""
    if getattr(predictor, "method", None) == "fusion":
        return {"weight": float(predictor.weight_)}
    if getattr(predictor, "method", None) == "mlp":
        return {"epochs": int(predictor.best_epoch_)}
    return {}


def _fit_out_of_fold(predictor, X, Y, classes, folds, seed, threshold, metric, at_least_one):
    late = getattr(predictor, "method", None) == "fusion" and predictor.fusion == "late"
    P = np.zeros(Y.shape, dtype=np.float32)
    parts = np.zeros((2, *Y.shape), dtype=np.float32)  # late fusion: poster, plot
    both = np.zeros(len(Y), dtype=bool)
    epochs = []
    for i, (tr, va) in enumerate(iterative_folds(Y, folds, seed)):
        with _quiet_parts():
            part = fit_estimator(_fresh(predictor), X[tr], Y[tr], classes, X[va], Y[va])
        P[va] = part.predict_proba(X[va])
        if late:
            parts[0, va], parts[1, va], both[va] = part.part_probas(X[va])
        if getattr(part, "method", None) == "mlp":
            epochs.append(part.best_epoch_)
        logger.info("fold %d/%d fitted on %d items", i + 1, folds, len(tr))
    fixed = {}
    if epochs:
        fixed = {"epochs": max(1, int(round(float(np.median(epochs))))), "patience": 0}
    if late:
        w = predictor.weight
        if w is None:
            w = choose_late_weight(parts[0, both], parts[1, both], Y[both])
        P[both] = w * parts[0, both] + (1 - w) * parts[1, both]
        fixed = {"weight": float(w)}
    _fit_all(predictor, X, Y, classes, fixed)
    n_train = len(X) - len(X) // folds
    _set_thresholds(
        predictor, P, Y, threshold, metric, at_least_one, n_train=n_train, folds=int(folds)
    )
    predictor.heldout_ = (np.arange(len(X)), P)
    return predictor


@contextmanager
def _quiet_parts():
    """Fits on part of the rows: a genre missing from a part is expected there; the fit on all
    rows still warns about genres with no example at all."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No positive training examples")
        yield


def _fresh(predictor):
    """An unfitted copy with the same params; unlike ``sklearn.base.clone`` it shares param
    objects (a zero-shot head's loaded encoder) instead of deep-copying them."""
    return type(predictor)(**predictor.get_params(deep=False))


def _fit_all(predictor, X, Y, classes, fixed: dict) -> None:
    """``predictor.fit(X, Y)`` with the params in ``fixed`` set for this fit only."""
    saved = {k: getattr(predictor, k) for k in fixed}
    predictor.set_params(**fixed)
    try:
        predictor.fit(X, Y, classes=classes)
    finally:
        predictor.set_params(**saved)  # the constructor params stay what the user gave
    predictor.refit_ = True


def refit_all(predictor, X: np.ndarray, Y: np.ndarray):
    """Fit ``predictor`` again on (X, Y) with what validation chose kept fixed: thresholds, the
    at-least-one rule, the late-fusion weight and the MLP's epoch count (no early stopping)."""
    thresholds, rule, classes = predictor.thresholds_, predictor.at_least_one_, predictor.classes_
    fixed = _chosen_on_validation(predictor)
    if "epochs" in fixed:
        fixed["patience"] = 0
    _fit_all(predictor, X, Y, classes, fixed)
    predictor.set_thresholds(thresholds, rule)
    return predictor
