"""Genre predictors over embeddings, all scikit-learn estimators (no index, no files).

``make_predictor(method, **params)`` builds one of :data:`METHODS` (zeroshot, knn, mlknn, linear,
mlp; ``fusion="early"|"late"`` for poster + plot); :class:`TunedThresholds` fits one and chooses
its decision thresholds on held-out predictions; :class:`HeadSpec` is what ``embedgenre train``
and ``embedgenre evaluate`` both fit. Heads saved in an index are :mod:`embedgenre.heads`.
"""

from __future__ import annotations

# the estimator modules register their classes (embedgenre.predictors.registry) on import
from embedgenre.predictors import fusion, linear, mlp, neighbors, zeroshot  # noqa: F401
from embedgenre.predictors.registry import METHODS, make_predictor
from embedgenre.predictors.spec import HeadSpec
from embedgenre.predictors.thresholds import apply_thresholds, fit_thresholds
from embedgenre.predictors.tuning import DEFAULT_FOLDS, TunedThresholds

__all__ = [
    "DEFAULT_FOLDS",
    "METHODS",
    "HeadSpec",
    "TunedThresholds",
    "apply_thresholds",
    "fit_thresholds",
    "make_predictor",
]
