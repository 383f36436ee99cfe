"""Decision thresholds chosen on predictions a model did not train on: :class:`TunedThresholds`.

A meta-estimator in the spirit of scikit-learn's ``TunedThresholdClassifierCV``, for multi-label
genre predictors. It wraps an unfitted :class:`~embedgenre.predictors.base.GenrePredictor` and

1. gets held-out probabilities: out-of-fold over ``cv`` folds (iterative stratification, every
   row scored once by a model that did not see it), or on one validation part (``validation``
   rows given to :meth:`TunedThresholds.fit`, else ``val_size`` of the rows drawn with ``seed``);
2. lets the estimator name what the held-out data chose for it (its ``chosen_params``: the MLP's
   epoch count, the late-fusion weight), pooled over the folds (``pool_chosen``);
3. chooses per-genre thresholds and the at-least-one rule on the held-out probabilities;
4. with ``refit``, fits a clone on every row with those params held fixed, and gives it the
   thresholds: ``estimator_`` is the model ``embedgenre train`` saves as a head.

Every fit is of a :func:`sklearn.base.clone` of ``estimator``, so the wrapped estimator is never
changed. ``validation_`` holds the held-out scores; ``heldout_`` the held-out (rows, probabilities).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import Estimator, check_Y
from embedgenre.predictors.metrics import scores
from embedgenre.predictors.thresholds import apply_thresholds, fit_thresholds

logger = logging.getLogger(__name__)

DEFAULT_FOLDS = 5
MIN_ROWS = 5  # fewer labelled rows cannot be split into a fitting and a held-out part


class TunedThresholds(Estimator):
    """Fit ``estimator`` and choose its thresholds on held-out predictions (see module doc).

    ``cv``: number of folds for out-of-fold predictions (K + 1 fits), or None for one validation
    part of ``val_size`` (2 fits with ``refit``). ``mode``, ``metric``, ``at_least_one``: the
    threshold search (:func:`~embedgenre.predictors.thresholds.fit_thresholds`).
    """

    def __init__(
        self,
        estimator=None,
        cv: int | None = DEFAULT_FOLDS,
        val_size: float = 0.2,
        refit: bool = True,
        mode: str = "per_genre",
        metric: str = "micro_f1",
        at_least_one: bool | None = None,
        seed: int = 0,
    ):
        self.estimator = estimator
        self.cv = cv
        self.val_size = val_size
        self.refit = refit
        self.mode = mode
        self.metric = metric
        self.at_least_one = at_least_one
        self.seed = seed

    def fit(self, X, Y, classes=None, validation=None) -> TunedThresholds:
        """Fit on ``X`` (n, ...) and multi-hot ``Y`` (n, g). ``validation``: row positions to
        hold out as the validation part (then ``cv`` is not used)."""
        if self.estimator is None:
            raise PredictorError("TunedThresholds needs an estimator to tune.")
        from sklearn.base import clone  # training only: loading a saved head never needs it

        from embedgenre.splits import iterative_folds, iterative_split

        Y = check_Y(Y, len(X))
        n = len(Y)
        if n < MIN_ROWS:
            raise PredictorError(
                f"Need at least {MIN_ROWS} labelled items to hold some out for the thresholds, "
                f"got {n}."
            )
        if validation is not None:
            fitting, held = _validation_rows(validation, n)
            parts = [(fitting, held)]
        elif self.cv is None:
            parts = [iterative_split(Y, test_size=self.val_size, seed=self.seed)]
        else:
            if not 2 <= self.cv <= n // 2:
                raise PredictorError(
                    f"folds must be between 2 and half the {n} training items, got {self.cv}."
                )
            parts = list(iterative_folds(Y, self.cv, self.seed))
        P, rows, chosen = self._heldout(X, Y, classes, parts)
        thr, rule, _ = fit_thresholds(
            P, Y[rows], mode=self.mode, metric=self.metric, at_least_one=self.at_least_one
        )
        self.thresholds_, self.at_least_one_, self.chosen_ = thr, rule, chosen
        self.validation_ = {
            **scores(Y[rows], P, apply_thresholds(P, thr, rule)),
            "n_train": int(n - len(rows) if len(parts) == 1 else n - n // len(parts)),
            "n_val": int(len(rows)),
        }
        if len(parts) > 1:
            self.validation_["folds"] = len(parts)
        self.heldout_ = (rows, P)
        if self.refit:
            final = clone(self.estimator).set_params(**chosen).fit(X, Y, classes=classes)
        else:
            final = self._first
        self.estimator_ = final.set_thresholds(thr, rule)
        self.classes_ = list(final.classes_)
        return self

    def _heldout(self, X, Y, classes, parts):
        """Held-out probabilities over the parts' held-out rows, the rows (sorted) and the
        params the held-out data chose (pooled over folds)."""
        from sklearn.base import clone

        fitted = []
        for i, (fitting, held) in enumerate(parts):
            with _quiet_parts():
                model = clone(self.estimator).fit(
                    X[fitting], Y[fitting], classes=classes, X_val=X[held], Y_val=Y[held]
                )
            fitted.append((model, held))
            if len(parts) > 1:
                logger.info("fold %d/%d fitted on %d items", i + 1, len(parts), len(fitting))
        self._first = fitted[0][0]
        chosen = self.estimator.pool_chosen([(m, X[h], Y[h]) for m, h in fitted])
        rows = np.sort(np.concatenate([h for _, h in fitted]))
        P = np.zeros((len(Y), Y.shape[1]), dtype=np.float32)
        for model, held in fitted:  # after pooling: a fold model may adopt the pooled choice
            P[held] = model.predict_proba(X[held])
        return P[rows], rows, chosen

    # -- the tuned model -------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise PredictorError("This TunedThresholds is not fitted yet; call fit(X, Y) first.")

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        return self.estimator_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        return self.estimator_.predict(X)


def _validation_rows(validation, n: int) -> tuple[np.ndarray, np.ndarray]:
    held = np.unique(np.asarray(validation, dtype=np.int64))
    if not len(held) or held[0] < 0 or held[-1] >= n or len(held) == n:
        raise PredictorError(
            "validation must name some, not all, of the rows of X (0-based positions)."
        )
    return np.setdiff1d(np.arange(n), held), held


@contextmanager
def _quiet_parts():
    """Fits on part of the rows: a genre missing from a part is expected there; the fit on all
    rows still warns about genres with no example at all."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No positive training examples")
        yield
