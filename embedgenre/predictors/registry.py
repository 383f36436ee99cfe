"""The predictor registry: method name -> estimator class, filled by the classes themselves.

Each estimator module decorates its class with :func:`register`; importing
:mod:`embedgenre.predictors` imports them all, so every method is known wherever a predictor is
built or loaded (:func:`make_predictor`, saved heads). This module imports no estimator, so
fusion, persistence and the factory can all use it without importing one another.
"""

from __future__ import annotations

from embedgenre.errors import PredictorError
from embedgenre.names import METHODS

__all__ = ["METHODS", "make_predictor", "predictor_class", "register", "registered"]


_CLASSES: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make ``cls`` the estimator of ``cls.method``."""
    _CLASSES[cls.method] = cls
    return cls


def registered() -> tuple[str, ...]:
    """Every method with an estimator class: those of :data:`METHODS`, then the others
    ("fusion")."""
    return (*(m for m in METHODS if m in _CLASSES), *(m for m in _CLASSES if m not in METHODS))


def predictor_class(method: str) -> type:
    """The estimator class of ``method`` (one of :data:`METHODS`, or "fusion")."""
    if method not in _CLASSES:
        raise PredictorError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    return _CLASSES[method]


def make_predictor(method: str, fusion: str | None = None, dims=None, **params):
    """A new, unfitted predictor.

    ``make_predictor("linear", C=2.0)``; with ``fusion="early"|"late"`` and ``dims=(d_poster,
    d_plot)`` a fusion predictor over ``method`` heads whose input is ``[poster | plot]`` (zeros =
    missing). Unknown params raise PredictorError.
    """
    if fusion is not None:
        predictor_class(method)
        poster_params = params.pop("poster_params", None)
        plot_params = params.pop("plot_params", None)
        weight = params.pop("weight", None)
        return predictor_class("fusion")(
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
