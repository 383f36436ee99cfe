"""Genre predictors over stored embeddings, all scikit-learn estimators.

``make_predictor(method, **params)`` builds one of :data:`METHODS` (zeroshot, knn, mlknn, linear,
mlp; ``fusion="early"|"late"`` for poster + plot); ``fit_with_validation`` fits it, picks
thresholds on held-out predictions (out-of-fold with ``folds=K``, else one validation split),
records the held-out scores and fits on all the rows it was given; ``save_predictor`` /
``load_predictor`` store it as JSON + arrays. Index-level training and prediction (what the CLI
calls) live in :mod:`embedgenre.predictors.heads`.
"""

from __future__ import annotations

# the estimator modules register their classes (embedgenre.predictors.registry) on import
from embedgenre.predictors import fusion, linear, mlp, neighbors, zeroshot  # noqa: F401
from embedgenre.predictors.factory import fit_with_validation
from embedgenre.predictors.persist import load_predictor, save_predictor
from embedgenre.predictors.registry import METHODS, make_predictor
from embedgenre.predictors.thresholds import apply_thresholds, fit_thresholds

__all__ = [
    "METHODS",
    "apply_thresholds",
    "fit_thresholds",
    "fit_with_validation",
    "load_predictor",
    "make_predictor",
    "save_predictor",
]
