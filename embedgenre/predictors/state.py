"""The saved form of a fitted predictor: a JSON-safe description and numeric arrays, and back.

:func:`predictor_state` gives (description, arrays) of a fitted predictor: method, constructor
params, classes, thresholds, the at-least-one rule and the estimator's own state; an estimator
made of parts (fusion) nests their descriptions, and their arrays take a ``<part>/`` prefix.
:func:`predictor_from_state` rebuilds one, checking every field and array first (types,
parameter names, one threshold per genre, array shapes, one trial scoring), so damaged data
raises PredictorError naming what is wrong, never an error from deep inside numpy.

What each method saves is declared by its estimator class (``saved_arrays`` with their shapes,
``n_features_in_``, ``_state`` / ``_load_state``; see
:class:`~embedgenre.predictors.base.GenrePredictor`); this module only knows the format. Writing
it to files is :mod:`embedgenre.heads.files`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.registry import predictor_class, registered

ARRAYS_FILE = "arrays.npz"


HEAD_FILE = "head.json"


# what a damaged file makes numpy, faiss or a constructor raise
LOAD_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    RuntimeError,
    OverflowError,
)


# what the symbols of an estimator's array shapes stand for; any other symbol is the size of
# an inner layer
_SYMBOLS = {
    "g": "the genres in 'classes'",
    "d": "the input dimension",
    "n": "the stored items",
    "k1": "k + 1",
}


def json_safe(value):
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise PredictorError(f"Cannot save parameter value {value!r} of type {type(value).__name__}.")


def _without_arrays(params: dict) -> dict:
    """Params with array values (zero-shot prompt matrices) left out: the fitted state holds
    what was made of them."""
    return {
        k: _without_arrays(v) if isinstance(v, dict) else v
        for k, v in params.items()
        if not isinstance(v, np.ndarray)
    }


def predictor_state(pred) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-safe description, arrays) of a fitted predictor."""
    pred._check_fitted()
    meta, arrays = pred._state()
    params = {k: v for k, v in pred.get_params(deep=False).items() if k != "classes"}
    desc = {
        "method": pred.method,
        "params": json_safe(_without_arrays(params)),
        "classes": list(pred.classes_),
        "thresholds": [float(t) for t in pred.thresholds_],
        "at_least_one": bool(pred.at_least_one_),
        "state": json_safe(meta),
    }
    return desc, {k: np.asarray(v) for k, v in arrays.items()}


class Unusable(PredictorError):
    """A saved predictor that cannot be rebuilt: ``part`` is the file at fault (head.json or
    arrays.npz), ``problem`` what is wrong in it; ``where`` (its directory) and ``fix`` complete
    the message."""

    def __init__(self, part: str, what: str, where: Path | None = None, fix: str | None = None):
        if where is not None:
            place = str(where / part)
        else:
            place = "saved predictor (" + ("description" if part == HEAD_FILE else "arrays") + ")"
        fix = fix or "Save the predictor again with embedgenre.heads.files.save_predictor"
        super().__init__(f"{place}: {what}.", f"{fix}.")
        self.part, self.problem = part, what


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value) -> str:
    """The JSON name of a parsed value's type."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_description(desc, at: str = "predictor") -> None:
    """Raise Unusable unless ``desc`` has the fields of :func:`predictor_state` with valid
    types: a known method, params it takes, genre names, one finite threshold per genre."""
    if not isinstance(desc, dict):
        raise Unusable(
            HEAD_FILE,
            f"'{at}' is {kind_of(desc)}, expected an object with method, params, classes, "
            "thresholds and at_least_one",
        )
    method, methods = desc.get("method"), registered()
    if not isinstance(method, str) or method not in methods:
        raise Unusable(
            HEAD_FILE, f"'{at}.method' is {short(method)}, expected one of {', '.join(methods)}"
        )
    params = desc.get("params", {})
    if not isinstance(params, dict):
        raise Unusable(HEAD_FILE, f"'{at}.params' is {kind_of(params)}, expected an object")
    takes = set(predictor_class(method)().get_params(deep=False))
    unknown = sorted(set(params) - takes)
    if unknown:
        raise Unusable(
            HEAD_FILE,
            f"'{at}.params' has parameter(s) {', '.join(map(repr, unknown))} that a {method} "
            f"head does not take (it takes {', '.join(sorted(takes - {'classes'}))})",
        )
    classes = desc.get("classes")
    if not (
        isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)
    ):
        raise Unusable(
            HEAD_FILE, f"'{at}.classes' is {short(classes)}, expected a list of genre names"
        )
    if len(set(classes)) != len(classes):
        raise Unusable(HEAD_FILE, f"'{at}.classes' names a genre twice")
    thresholds = desc.get("thresholds")
    if not (isinstance(thresholds, list) and all(is_number(t) for t in thresholds)):
        raise Unusable(
            HEAD_FILE,
            f"'{at}.thresholds' is {short(thresholds)}, expected a list of finite numbers, "
            "one per genre",
        )
    if len(thresholds) != len(classes):
        raise Unusable(
            HEAD_FILE,
            f"'{at}.thresholds' has {len(thresholds)} values but '{at}.classes' names "
            f"{len(classes)} genres; expected one threshold per genre",
        )
    if not isinstance(desc.get("at_least_one"), bool):
        raise Unusable(
            HEAD_FILE,
            f"'{at}.at_least_one' is {short(desc.get('at_least_one'))}, expected true or false",
        )
    state = desc.get("state", {})
    if not isinstance(state, dict):
        raise Unusable(HEAD_FILE, f"'{at}.state' is {kind_of(state)}, expected an object")
    predictor_class(method).check_saved_state(state, classes, f"{at}.state")


def _construct(desc: dict):
    """An estimator with the described params, classes, thresholds and at-least-one rule."""
    method = desc["method"]
    cls = predictor_class(method)
    params = dict(desc.get("params", {}))
    for name in cls.tuple_params:
        if isinstance(params.get(name), list):
            params[name] = tuple(params[name])
    try:
        pred = cls(**params)
    except LOAD_ERRORS as e:
        raise Unusable(
            HEAD_FILE, f"the params do not fit a {method} head ({type(e).__name__}: {e})"
        ) from e
    pred.classes_ = list(desc["classes"])
    pred.thresholds_ = np.asarray(desc["thresholds"], dtype=np.float32)
    pred.at_least_one_ = bool(desc["at_least_one"])
    return pred


def _check_arrays(pred, arrays: dict, state: dict, prefix: str = "") -> None:
    """Raise Unusable unless ``arrays`` hold numbers in the shapes ``pred``'s class saves."""
    for key, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise Unusable(
                ARRAYS_FILE, f"array '{prefix}{key}' holds {what} values, expected numbers"
            )
    bound = pred.shape_sizes()
    for key, dims in type(pred).array_shapes(state).items():
        name = f"'{prefix}{key}'"
        if key not in arrays:
            raise Unusable(ARRAYS_FILE, f"array {name} of the {pred.method} head is missing")
        shape = arrays[key].shape
        expected = (
            "(" + ", ".join(str(bound.get(s, s)) for s in dims) + ("," * (len(dims) == 1)) + ")"
        )
        if len(shape) != len(dims) or 0 in shape:
            raise Unusable(ARRAYS_FILE, f"array {name} has shape {shape}, expected {expected}")
        for sym, size in zip(dims, shape):
            if bound.setdefault(sym, size) != size:
                meaning = _SYMBOLS.get(sym, "the size of the layer before")
                raise Unusable(
                    ARRAYS_FILE,
                    f"array {name} has shape {shape}, expected {expected} "
                    f"({bound[sym]} = {meaning})",
                )


def _try_scoring(pred) -> None:
    """Score one input of the head's dimension: the scores must be one per genre, in 0..1."""
    g = len(pred.classes_)
    pred.check_restored()
    try:
        d = pred.n_features_in_
        x = np.full((1, d), 1.0 / np.sqrt(d), dtype=np.float32)
        with np.errstate(all="ignore"):
            P = np.asarray(pred.predict_proba(x))
    except PredictorError as e:
        raise Unusable(ARRAYS_FILE, f"the head cannot score an input ({e})") from e
    except LOAD_ERRORS as e:
        raise _misfit(pred, e) from e
    if P.shape != (1, g):
        raise Unusable(
            ARRAYS_FILE,
            f"the arrays give {P.shape[-1] if P.ndim else 0} scores per item but 'classes' "
            f"names {g} genres",
        )
    if not (np.isfinite(P).all() and P.min() >= 0 and P.max() <= 1):
        raise Unusable(ARRAYS_FILE, "the arrays give scores outside 0..1 (NaN or infinite weights)")


def _misfit(pred, error: Exception) -> Unusable:
    return Unusable(
        ARRAYS_FILE,
        f"the arrays do not fit the {pred.method} head described in {HEAD_FILE} "
        f"({type(error).__name__}: {error})",
    )


def rebuild(desc: dict, arrays: dict[str, np.ndarray]):
    """The fitted predictor of a checked description (see :func:`check_description`)."""
    pred = _construct(desc)
    state = desc.get("state", {})
    _check_arrays(pred, arrays, state)
    for which, part in type(pred).saved_parts(state).items():  # errors name the part's prefix
        _check_arrays(
            _construct(part), part_arrays(arrays, which), part.get("state", {}), f"{which}/"
        )
    try:
        pred._load_state(state, arrays)
    except Unusable as e:
        raise Unusable(e.part, f"in a fused part, {e.problem}") from e.__cause__
    except PredictorError as e:
        raise Unusable(ARRAYS_FILE, f"the arrays cannot be used ({e})") from e
    except LOAD_ERRORS as e:
        raise _misfit(pred, e) from e
    _try_scoring(pred)
    return pred


def prefixed(part: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of part ``part`` as its whole saves them: each name under ``<part>/``."""
    return {f"{part}/{k}": v for k, v in arrays.items()}


def part_arrays(arrays: dict[str, np.ndarray], part: str) -> dict[str, np.ndarray]:
    """The arrays of part ``part`` from its whole's arrays, their ``<part>/`` prefix removed."""
    prefix = f"{part}/"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def predictor_from_state(desc: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted predictor from :func:`predictor_state` output.

    Every field is checked first; PredictorError names the field or array that is wrong.
    """
    check_description(desc)
    return rebuild(desc, arrays)
