"""The estimator contract every predictor shares, and input validation.

A predictor maps embeddings ``X`` float32 (n, dim) to per-genre probabilities (n, n_genres).
Decisions use thresholds (one per genre) and an optional "at least one genre" rule, both chosen
on held-out predictions by :class:`embedgenre.predictors.tuning.TunedThresholds`.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any, ClassVar

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.thresholds import apply_thresholds

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def check_X(X: Any, dim: int | None = None, what: str = "X") -> np.ndarray:
    """Return ``X`` as a float32 C-contiguous (n, d) array or raise PredictorError."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise PredictorError(
            f"Expected {what} as a 2D array (n_items, dim), got shape {X.shape}; "
            "reshape a single vector with X.reshape(1, -1)."
        )
    if X.shape[0] == 0:
        raise PredictorError(f"{what} has no rows; give at least one embedding.")
    if dim is not None and X.shape[1] != dim:
        raise PredictorError(
            f"{what} has dimension {X.shape[1]} but the predictor was fitted on dimension {dim}; "
            "use embeddings from the same encoder the head was trained on."
        )
    if not np.isfinite(X).all():
        raise PredictorError(f"{what} contains NaN or infinite values.")
    return np.ascontiguousarray(X, dtype=np.float32)


def check_Y(Y: Any, n: int) -> np.ndarray:
    """Return ``Y`` as a uint8 multi-hot (n, g) array or raise PredictorError."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise PredictorError(
            f"Expected Y as a 2D multi-hot matrix (n_items, n_genres), got shape {Y.shape}."
        )
    if Y.shape[0] != n:
        raise PredictorError(f"X has {n} rows but Y has {Y.shape[0]}; they must be row-aligned.")
    if Y.size and not np.isin(Y, (0, 1)).all():
        raise PredictorError("Y must be multi-hot (only 0 and 1).")
    return Y.astype(np.uint8)


def resolve_classes(classes: Any, n_genres: int) -> list[str]:
    """Genre names: the given list, or ``genre_0 ... genre_{g-1}`` when none was given."""
    if classes is None:
        return [f"genre_{i}" for i in range(n_genres)]
    classes = [str(c) for c in classes]
    if len(classes) != n_genres:
        raise PredictorError(
            f"classes has {len(classes)} names but Y has {n_genres} columns; give one name per column."
        )
    if len(set(classes)) != len(classes):
        raise PredictorError("classes contains duplicate genre names.")
    return classes


def warn_empty_genres(Y: np.ndarray, classes: list[str]) -> np.ndarray:
    """Warn about genres with no positive example; return a bool mask (g,) of those genres."""
    empty = Y.sum(axis=0) == 0
    if empty.any():
        names = ", ".join(c for c, e in zip(classes, empty) if e)
        warnings.warn(
            f"No positive training examples for genre(s): {names}; they are never predicted "
            "(probability 0). Add labelled items of those genres to learn them.",
            UserWarning,
            stacklevel=3,
        )
    return empty


def median_params(chosen: list[dict]) -> dict:
    """Per key, the median over ``chosen`` of a number (rounded when the values are ints), the
    same recursively for a dict, else the first value."""
    if not chosen or not chosen[0]:
        return {}
    out = {}
    for key, first in chosen[0].items():
        values = [c[key] for c in chosen if key in c]
        if isinstance(first, dict):
            out[key] = median_params(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            mid = float(np.median(values))
            out[key] = int(round(mid)) if all(isinstance(v, int) for v in values) else mid
        else:
            out[key] = first
    return out


class Estimator:
    """The scikit-learn estimator protocol, without importing scikit-learn: params are the
    ``__init__`` arguments, stored under their own names, so :func:`sklearn.base.clone`, grid
    searches and ``repr`` work on every predictor, and loading a saved head stays light."""

    @classmethod
    def _param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        params = inspect.signature(init).parameters.values()
        return sorted(
            p.name for p in params if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params(deep=True).items())
        return out

    def set_params(self, **params) -> Estimator:
        valid = self._param_names()
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise PredictorError(
                    f"{type(self).__name__} has no parameter '{name}'; its parameters are: "
                    f"{', '.join(valid) or 'none'}"
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        shown = [
            f"{k}={v!r}"
            for k, v in self.get_params(deep=False).items()
            if not (k in defaults and _same(defaults[k], v))
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:  # arrays and other values without a plain truth value
        return False


class GenrePredictor(Estimator):
    """Base class: thresholds + ``predict`` on top of a subclass's ``predict_proba``.

    Subclasses implement ``fit(X, Y, classes=None, X_val=None, Y_val=None)`` (which must call
    :meth:`_init_fitted`; the validation rows are for estimators that stop or choose something on
    them, the others ignore them) and ``predict_proba(X)``. A saved estimator declares its own
    state: :attr:`saved_arrays` (or :meth:`array_shapes`), :attr:`n_features_in_`,
    ``_state() -> (json dict, arrays dict)`` and ``_load_state(json dict, arrays dict)``, and
    where needed :meth:`check_saved_state`, :meth:`saved_parts` and :meth:`check_restored`.
    Estimators that choose a param on validation data say so in :meth:`chosen_params` and
    :meth:`pool_chosen`, so :class:`~embedgenre.predictors.tuning.TunedThresholds` can hold it
    fixed when it refits on every row.
    """

    method: str = "base"

    def _init_fitted(self, Y: np.ndarray, classes: Any) -> None:
        g = Y.shape[1]
        self.classes_ = resolve_classes(classes, g)
        self.thresholds_ = np.full(g, DEFAULT_THRESHOLD, dtype=np.float32)
        self.at_least_one_ = True

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise PredictorError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, Y) first."
            )

    def predict_proba(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def chosen_params(self) -> dict:
        """Constructor params this fit chose on its validation rows (none by default)."""
        return {}

    def pool_chosen(self, folds: list[tuple[GenrePredictor, np.ndarray, np.ndarray]]) -> dict:
        """One choice from models fitted on different folds, each given with its held-out
        ``(X_val, Y_val)``: by default the median of each chosen number over the folds."""
        return median_params([model.chosen_params() for model, _, _ in folds])

    def predict(self, X) -> np.ndarray:
        """Multi-hot decisions uint8 (n, n_genres) from probabilities and the fitted thresholds."""
        self._check_fitted()
        return apply_thresholds(self.predict_proba(X), self.thresholds_, self.at_least_one_)

    def set_thresholds(self, thresholds, at_least_one: bool) -> GenrePredictor:
        """Replace the decision thresholds (scalar or (n_genres,)) and the at-least-one rule."""
        self._check_fitted()
        thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (len(self.classes_),))
        self.thresholds_ = thr.copy()
        self.at_least_one_ = bool(at_least_one)
        return self

    # -- saved state (arrays + JSON only; the file format is embedgenre.predictors.state) -----
    #: The arrays a saved head holds, each with its shape in symbols: ``g`` the genres, ``d`` the
    #: input width, ``n`` the stored items, ``k1`` = k + 1; a symbol shared by two arrays must
    #: have one size.
    saved_arrays: ClassVar[dict[str, tuple[str, ...]]] = {}

    #: Constructor params that JSON gives back as lists but the constructor takes as tuples.
    tuple_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def array_shapes(cls, state: dict) -> dict[str, tuple[str, ...]]:
        """The arrays (name -> shape in symbols) of a saved head whose JSON state, already
        checked by :meth:`check_saved_state`, is ``state``: :attr:`saved_arrays` by default."""
        return dict(cls.saved_arrays)

    @classmethod
    def check_saved_state(cls, state: dict, classes: list[str], at: str) -> None:
        """Raise :class:`~embedgenre.predictors.state.Unusable` unless ``state`` (the JSON
        object at ``at`` in head.json) is one this estimator can rebuild from; none is
        checked by default."""

    @classmethod
    def saved_parts(cls, state: dict) -> dict[str, dict]:
        """The saved descriptions of the estimators this one is made of (by part name, their
        arrays saved under ``<part>/``): none by default."""
        return {}

    def shape_sizes(self) -> dict[str, int]:
        """The sizes of shape symbols known before any array is read."""
        return {"g": len(self.classes_)}

    @property
    def n_features_in_(self) -> int:
        """The input width d this fitted estimator scores."""
        raise NotImplementedError

    def check_restored(self) -> None:
        """Raise :class:`~embedgenre.predictors.state.Unusable` when the rebuilt estimator's
        parts disagree with one another: nothing to check by default."""

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-safe state, arrays by name) of the fitted estimator."""
        raise NotImplementedError

    def _load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted attributes from :meth:`_state`'s output (shapes already checked
        against :meth:`array_shapes`)."""
        raise NotImplementedError
