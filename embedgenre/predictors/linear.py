"""One-vs-rest logistic regression (scikit-learn), stored as plain arrays.

Fitting uses :class:`sklearn.linear_model.LogisticRegression` per genre; only ``coef_`` (g, d) and
``intercept_`` (g,) are kept, so probabilities are ``sigmoid(X @ coef_.T + intercept_)``. A genre
with no positive example gets a constant probability of 0.
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import GenrePredictor, check_X, check_Y, warn_empty_genres
from embedgenre.predictors.registry import register

logger = logging.getLogger(__name__)


@register
class LinearPredictor(GenrePredictor):
    """One-vs-rest logistic regression; ``C`` inverse regularisation, ``class_weight`` None or
    "balanced"."""

    method = "linear"
    saved_arrays = {"coef": ("g", "d"), "intercept": ("g",)}

    def __init__(
        self, C: float = 1.0, class_weight: str | None = None, max_iter: int = 300, classes=None
    ):
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.classes = classes

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> LinearPredictor:
        from sklearn.linear_model import LogisticRegression

        X = check_X(X)
        Y = check_Y(Y, len(X))
        if self.class_weight not in (None, "balanced"):
            raise PredictorError(
                f"class_weight must be None or 'balanced', got {self.class_weight!r}."
            )
        if not self.C > 0:
            raise PredictorError(f"C must be > 0, got {self.C}.")
        self._init_fitted(Y, classes if classes is not None else self.classes)
        empty = warn_empty_genres(Y, self.classes_)
        g, d = Y.shape[1], X.shape[1]
        self.coef_ = np.zeros((g, d), dtype=np.float32)
        self.intercept_ = np.zeros(g, dtype=np.float32)
        for j in range(g):
            pos = int(Y[:, j].sum())
            if empty[j]:
                self.intercept_[j] = -np.inf  # never predicted
                continue
            if pos == len(Y):
                self.intercept_[j] = np.inf  # every training item has it
                continue
            lr = LogisticRegression(
                C=self.C, class_weight=self.class_weight, max_iter=self.max_iter
            ).fit(X, Y[:, j])
            self.coef_[j] = lr.coef_[0]
            self.intercept_[j] = lr.intercept_[0]
        return self

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_X(X, self.coef_.shape[1])
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-self.decision_function(X)))).astype(np.float32)

    @property
    def n_features_in_(self) -> int:
        return self.coef_.shape[1]

    def _state(self):
        return {}, {"coef": self.coef_, "intercept": self.intercept_}

    def _load_state(self, meta, arrays):
        self.coef_ = arrays["coef"].astype(np.float32)
        self.intercept_ = arrays["intercept"].astype(np.float32)
