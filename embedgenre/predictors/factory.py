"""One entry point to build and train predictors: :func:`make_predictor` and
:func:`fit_with_validation` (validation split, thresholds and validation scores in one call)."""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.errors import PredictorError

logger = logging.getLogger(__name__)

METHODS = ("zeroshot", "knn", "mlknn", "linear", "mlp")


def predictor_class(method: str):
    """The estimator class of ``method`` (one of :data:`METHODS`, or "fusion")."""
    from embedgenre.predictors.fusion import FusionPredictor
    from embedgenre.predictors.linear import LinearPredictor
    from embedgenre.predictors.mlp import MLPPredictor
    from embedgenre.predictors.neighbors import KNNVotePredictor, MLKNNPredictor
    from embedgenre.predictors.zeroshot import ZeroShotPredictor

    classes = {
        "zeroshot": ZeroShotPredictor,
        "knn": KNNVotePredictor,
        "mlknn": MLKNNPredictor,
        "linear": LinearPredictor,
        "mlp": MLPPredictor,
        "fusion": FusionPredictor,
    }
    if method not in classes:
        raise PredictorError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    return classes[method]


def make_predictor(method: str, fusion: str | None = None, dims=None, **params):
    """A new, unfitted predictor.

    ``make_predictor("linear", C=2.0)``; with ``fusion="early"|"late"`` and ``dims=(d_poster,
    d_plot)`` a :class:`~embedgenre.predictors.fusion.FusionPredictor` over ``method`` heads whose
    input is ``[poster | plot]`` (zeros = missing). Unknown params raise PredictorError.
    """
    if fusion is not None:
        from embedgenre.predictors.fusion import FusionPredictor

        predictor_class(method)
        poster_params = params.pop("poster_params", None)
        plot_params = params.pop("plot_params", None)
        weight = params.pop("weight", None)
        return FusionPredictor(
            base=method,
            fusion=fusion,
            dims=dims,
            params=params,
            poster_params=poster_params,
            plot_params=plot_params,
            weight=weight,
        )
    cls = predictor_class(method)
    valid = set(cls().get_params(deep=False))
    unknown = set(params) - valid
    if unknown:
        raise PredictorError(
            f"Unknown parameter(s) for {method}: {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(valid))}."
        )
    return cls(**params)


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
):
    """Fit ``predictor`` on a training part of (X, Y), then choose thresholds on the rest.

    The validation part (``val_size`` of the rows, iterative stratification with ``seed``) also
    drives early stopping (MLP) and the late-fusion weight. Sets ``predictor.validation_`` to
    {micro_f1, macro_f1, samples_f1, map, n_train, n_val} (scores of the model fitted on the
    training part). With ``refit`` the model is then fitted again on all rows, keeping the
    thresholds and what validation chose (fusion weight, MLP epoch count): more data gives
    better probabilities. Returns the fitted predictor.
    """
    from embedgenre.catalog import iterative_split
    from embedgenre.predictors.base import check_Y
    from embedgenre.predictors.fusion import fit_estimator
    from embedgenre.predictors.metrics import scores
    from embedgenre.predictors.thresholds import fit_thresholds

    X = np.asarray(X, dtype=np.float32)
    Y = check_Y(Y, len(X))
    if len(X) < 5:
        raise PredictorError(
            f"Need at least 5 labelled items to carve a validation split, got {len(X)}."
        )
    tr, va = iterative_split(Y, test_size=val_size, seed=seed)
    fit_estimator(predictor, X[tr], Y[tr], classes, X[va], Y[va])
    P = predictor.predict_proba(X[va])
    thr, rule, _ = fit_thresholds(
        P, Y[va], mode=threshold, metric=metric, at_least_one=at_least_one
    )
    predictor.set_thresholds(thr, rule)
    predictor.validation_ = {
        **scores(Y[va], P, predictor.predict(X[va])),
        "n_train": int(len(tr)),
        "n_val": int(len(va)),
    }
    if refit:
        refit_all(predictor, X, Y)
    return predictor


def refit_all(predictor, X: np.ndarray, Y: np.ndarray):
    """Fit ``predictor`` again on (X, Y) with what validation chose kept fixed: thresholds, the
    at-least-one rule, the late-fusion weight and the MLP's epoch count (no early stopping)."""
    thresholds, rule, classes = predictor.thresholds_, predictor.at_least_one_, predictor.classes_
    fixed = {}
    if getattr(predictor, "method", None) == "fusion":
        fixed["weight"] = predictor.weight_
    if getattr(predictor, "method", None) == "mlp":
        fixed.update(epochs=int(predictor.best_epoch_), patience=0)
    saved = {k: getattr(predictor, k) for k in fixed}
    predictor.set_params(**fixed)
    try:
        predictor.fit(X, Y, classes=classes)
    finally:
        predictor.set_params(**saved)  # the constructor params stay what the user gave
    predictor.set_thresholds(thresholds, rule)
    predictor.refit_ = True
    return predictor
