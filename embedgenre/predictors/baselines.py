"""Trivial baselines: predictors that never look at a poster or a plot.

They fix the floor every real method must clear. Each is a
:class:`~embedgenre.predictors.base.GenrePredictor` (``fit(X, Y)``, ``predict_proba(X)``,
``predict(X)``) that uses ``X`` only for its length.

| kind            | predicts                                                            |
|-----------------|---------------------------------------------------------------------|
| ``none``        | no genre at all                                                     |
| ``most_frequent`` | the single most frequent training genre, for every movie          |
| ``top_k``       | the k most frequent training genres, k = mean labels per movie, rounded |
| ``all``         | every genre                                                         |
| ``prior``       | scores = training genre frequencies (for mAP); labels = genres held by more than half the training movies |
"""

from __future__ import annotations

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import GenrePredictor, check_Y

#: Kinds of trivial baseline, in table order.
TRIVIAL_KINDS: tuple[str, ...] = ("none", "most_frequent", "top_k", "all", "prior")


class TrivialBaseline(GenrePredictor):
    """A label-only predictor; ``kind`` is one of :data:`TRIVIAL_KINDS`. Its decisions are
    ``predict_proba >= 0.5`` with no at-least-one rule: the fixed label row of its kind."""

    method = "trivial"

    def __init__(self, kind: str = "top_k", classes: list[str] | None = None) -> None:
        self.kind = kind
        self.classes = classes

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> TrivialBaseline:
        """Learn genre frequencies from training labels ``Y`` (n, g) 0/1; ``X`` is ignored."""
        if self.kind not in TRIVIAL_KINDS:
            raise PredictorError(
                f"Unknown trivial baseline {self.kind!r}; expected one of {', '.join(TRIVIAL_KINDS)}."
            )
        Y = np.asarray(Y)
        if Y.ndim != 2 or Y.shape[0] == 0:
            raise PredictorError(
                f"Expected a non-empty label matrix (n, n_genres), got shape {Y.shape}."
            )
        Y = check_Y(Y, len(Y))
        g = Y.shape[1]
        self.prior_ = Y.mean(axis=0).astype(np.float64)
        # Stable sort: ties broken by vocabulary order, so the choice is deterministic.
        order = np.argsort(-self.prior_, kind="stable")
        self.k_ = int(max(1, round(float(Y.sum(axis=1).mean()))))
        row = np.zeros(g, dtype=np.uint8)
        if self.kind == "most_frequent":
            row[order[0]] = 1
        elif self.kind == "top_k":
            row[order[: self.k_]] = 1
        elif self.kind == "all":
            row[:] = 1
        elif self.kind == "prior":
            row[self.prior_ > 0.5] = 1
        self.row_ = row
        self._init_fitted(Y, classes if classes is not None else self.classes)
        self.at_least_one_ = False
        # prior: a genre held by exactly half the movies scores 0.5 but is not in row_
        half, above = np.float32(0.5), np.nextafter(np.float32(0.5), np.float32(1.0))
        self.thresholds_ = np.where((self.prior_ == 0.5) & (row == 0), above, half)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, g) scores: the training prior for ``prior``, the 0/1 prediction for the others."""
        self._check_fitted()
        base = self.prior_ if self.kind == "prior" else self.row_.astype(np.float64)
        return np.tile(base, (len(X), 1))

    @property
    def has_scores(self) -> bool:
        """Whether ``predict_proba`` is a real score worth ranking (mAP); only for ``prior``."""
        return self.kind == "prior"
