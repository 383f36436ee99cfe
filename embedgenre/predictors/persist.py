"""Saving and loading fitted predictors as JSON + arrays (``.npz``, no pickles).

A predictor's description (``head.json`` part) holds its method, constructor params, classes,
thresholds, the at-least-one rule and method-specific state; arrays go to one ``arrays.npz``
loaded with ``allow_pickle=False``. Fusion heads nest their parts with ``<part>/`` array prefixes.

Loading checks every field and array before use (types, parameter names, one threshold per genre,
array shapes, one trial scoring), so a damaged or foreign head raises PredictorError naming the
file, what is wrong and how to replace it, never an error from deep inside numpy.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path
from tokenize import TokenError

import numpy as np
from numpy.lib.npyio import NpzFile

from embedgenre.errors import PredictorError
from embedgenre.predictors.registry import METHODS, predictor_class
from embedgenre.store import atomic

ARRAYS_FILE = "arrays.npz"
# what np.load raises for a damaged array besides ValueError (a garbled header is parsed as
# Python literals)
_NPY_ERRORS = (OSError, EOFError, SyntaxError, TokenError, MemoryError)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    name = getattr(value, "name", None)  # an Encoder object: keep its registry name
    if isinstance(name, str):
        return name
    raise PredictorError(f"Cannot save parameter value {value!r} of type {type(value).__name__}.")


def predictor_state(pred) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-safe description, arrays) of a fitted predictor."""
    pred._check_fitted()
    meta, arrays = pred._state()
    params = {k: v for k, v in pred.get_params(deep=False).items() if k != "classes"}
    desc = {
        "method": pred.method,
        "params": _json_safe(params),
        "classes": list(pred.classes_),
        "thresholds": [float(t) for t in pred.thresholds_],
        "at_least_one": bool(pred.at_least_one_),
        "state": _json_safe(meta),
    }
    return desc, {k: np.asarray(v) for k, v in arrays.items()}


def save_predictor(pred, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``arrays.npz`` and then ``head.json`` (description + ``extra``) into ``directory``.

    Each file is written atomically; heads of an index go to a new generation folder that only
    the manifest commit publishes (:func:`embedgenre.predictors.heads.save_head`).
    """
    directory = Path(directory)
    desc, arrays = predictor_state(pred)
    doc = {"format": 1, **_json_safe(extra or {}), "predictor": desc}
    atomic.save_npz(directory / ARRAYS_FILE, **arrays)
    atomic.write_json(directory / "head.json", doc)  # last: marks a complete head
    return directory


# ------------------------------------------------------------------------------- loading

HEAD_FILE = "head.json"
SAVED_METHODS = (*METHODS, "fusion")
HEAD_MODALITIES = ("poster", "plot", "both")
FUSION_PARTS = ("poster", "plot", "joint")
_HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# what a damaged file makes numpy, faiss or a constructor raise
_LOAD_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    RuntimeError,
    OverflowError,
)
# array shapes per method: g genres (len(classes)), d input dimension, n stored items,
# k1 = k + 1 neighbour counts; MLP layers are added by _array_shapes
_SHAPES = {
    "linear": {"coef": ("g", "d"), "intercept": ("g",)},
    "knn": {"X": ("n", "d"), "Y": ("n", "g")},
    "mlknn": {
        "X": ("n", "d"),
        "Y": ("n", "g"),
        "prior": ("g",),
        "cond_true": ("g", "k1"),
        "cond_false": ("g", "k1"),
    },
    "zeroshot": {"W": ("d", "g"), "mean": ("g",), "std": ("g",), "slope": ("g",), "bias": ("g",)},
}
_SYMBOLS = {
    "g": "the genres in 'classes'",
    "d": "the input dimension",
    "n": "the stored items",
    "k1": "k + 1",
}


class _Unusable(PredictorError):
    """A saved predictor that cannot be rebuilt: ``part`` is the file at fault (head.json or
    arrays.npz), ``what`` says what is wrong; ``where`` (its directory) and ``fix`` complete the
    message."""

    def __init__(self, part: str, what: str, where: Path | None = None, fix: str | None = None):
        self.part, self.what = part, what
        if where is not None:
            place = str(where / part)
        else:
            place = "saved predictor (" + ("description" if part == HEAD_FILE else "arrays") + ")"
        fix = fix or "Save the predictor again with save_predictor"
        super().__init__(f"{place}: {what}. {fix}.")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value) -> str:
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _retrain_fix(directory: Path, doc) -> str:
    """How to replace a damaged head: the train command when it lives in an index's heads/."""
    what = "The head is damaged or was written by another program"
    if directory.parent.name != "heads":
        return f"{what}; train and save it again"
    doc = doc if isinstance(doc, dict) else {}
    method, modality, fusion, name = (doc.get(k) for k in ("method", "modality", "fusion", "name"))
    opts = ""
    if method in SAVED_METHODS[:-1]:
        opts += f" --method {method}"
    if modality in HEAD_MODALITIES:
        opts += f" --modality {modality}"
    if modality == "both" and fusion in ("early", "late"):
        opts += f" --fusion {fusion}"
    if isinstance(name, str) and _HEAD_NAME.match(name):
        opts += f" --name {name}"
    return f"{what}; train it again: `embedgenre train {directory.parent.parent}{opts}`"


def _check_description(desc, at: str = "predictor") -> None:
    """Raise _Unusable unless ``desc`` has the fields of :func:`predictor_state` with valid
    types: a known method, params it takes, genre names, one finite threshold per genre."""
    if not isinstance(desc, dict):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}' is {_kind(desc)}, expected an object with method, params, classes, "
            "thresholds and at_least_one",
        )
    method = desc.get("method")
    if not isinstance(method, str) or method not in SAVED_METHODS:
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.method' is {_short(method)}, expected one of {', '.join(SAVED_METHODS)}",
        )
    params = desc.get("params", {})
    if not isinstance(params, dict):
        raise _Unusable(HEAD_FILE, f"'{at}.params' is {_kind(params)}, expected an object")
    takes = set(predictor_class(method)().get_params(deep=False))
    unknown = sorted(set(params) - takes)
    if unknown:
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.params' has parameter(s) {', '.join(map(repr, unknown))} that a {method} "
            f"head does not take (it takes {', '.join(sorted(takes - {'classes'}))})",
        )
    classes = desc.get("classes")
    if not (
        isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)
    ):
        raise _Unusable(
            HEAD_FILE, f"'{at}.classes' is {_short(classes)}, expected a list of genre names"
        )
    if len(set(classes)) != len(classes):
        raise _Unusable(HEAD_FILE, f"'{at}.classes' names a genre twice")
    thresholds = desc.get("thresholds")
    if not (isinstance(thresholds, list) and all(_is_number(t) for t in thresholds)):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.thresholds' is {_short(thresholds)}, expected a list of finite numbers, "
            "one per genre",
        )
    if len(thresholds) != len(classes):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.thresholds' has {len(thresholds)} values but '{at}.classes' names "
            f"{len(classes)} genres; expected one threshold per genre",
        )
    if not isinstance(desc.get("at_least_one"), bool):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.at_least_one' is {_short(desc.get('at_least_one'))}, expected true or false",
        )
    state = desc.get("state", {})
    if not isinstance(state, dict):
        raise _Unusable(HEAD_FILE, f"'{at}.state' is {_kind(state)}, expected an object")
    if method == "mlp" and not _is_count(state.get("n_layers")):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.state.n_layers' is {_short(state.get('n_layers'))}, expected a positive "
            "integer",
        )
    if method == "fusion":
        _check_fusion_state(state, classes, f"{at}.state")


def _check_fusion_state(state: dict, classes: list[str], at: str) -> None:
    dims, weight, parts = state.get("dims"), state.get("weight"), state.get("parts")
    if not (isinstance(dims, list) and len(dims) == 2 and all(_is_count(d) for d in dims)):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.dims' is {_short(dims)}, expected [poster dimension, plot dimension]",
        )
    if not (_is_number(weight) and 0 <= weight <= 1):
        raise _Unusable(
            HEAD_FILE, f"'{at}.weight' is {_short(weight)}, expected a number from 0 to 1"
        )
    if not (isinstance(parts, dict) and parts and set(parts) <= set(FUSION_PARTS)):
        raise _Unusable(
            HEAD_FILE,
            f"'{at}.parts' is {_short(parts)}, expected an object with some of "
            f"{', '.join(FUSION_PARTS)}",
        )
    for which, part in parts.items():
        _check_description(part, f"{at}.parts.{which}")
        if part["method"] == "fusion":
            raise _Unusable(HEAD_FILE, f"'{at}.parts.{which}' is itself a fused head")
        if part["classes"] != classes:
            raise _Unusable(
                HEAD_FILE,
                f"'{at}.parts.{which}.classes' differs from the classes of the fused head",
            )


def _check_head_fields(doc: dict) -> None:
    """The fields a head saved in an index adds: name, modality, encoders, genres, metrics (each
    checked when present; a head with embedding sets needs the first four)."""
    if "encoders" in doc:
        missing = [k for k in ("name", "modality", "genres") if k not in doc]
        if missing:
            raise _Unusable(HEAD_FILE, f"it has 'encoders' but no {', '.join(map(repr, missing))}")
    name, modality = doc.get("name", "-"), doc.get("modality", "poster")
    if not isinstance(name, str) or not name:
        raise _Unusable(HEAD_FILE, f"'name' is {_short(name)}, expected the head's name")
    if modality not in HEAD_MODALITIES:
        raise _Unusable(
            HEAD_FILE,
            f"'modality' is {_short(modality)}, expected one of {', '.join(HEAD_MODALITIES)}",
        )
    encoders = doc.get("encoders", {})
    wanted = {"poster", "plot"} if modality == "both" else {modality}
    if not isinstance(encoders, dict) or ("encoders" in doc and set(encoders) != wanted):
        raise _Unusable(
            HEAD_FILE,
            f"'encoders' is {_short(encoders)}, expected an object with the "
            f"{' and '.join(sorted(wanted))} embedding set(s) of a {modality} head",
        )
    for m, enc in encoders.items():
        if not (
            isinstance(enc, dict)
            and isinstance(enc.get("encoder"), str)
            and _is_count(enc.get("dim"))
        ):
            raise _Unusable(
                HEAD_FILE,
                f"'encoders.{m}' is {_short(enc)}, expected an object with 'encoder' (a name) "
                "and 'dim' (a positive integer)",
            )
    genres = doc.get("genres", [])
    if not (isinstance(genres, list) and all(isinstance(g, str) for g in genres)):
        raise _Unusable(HEAD_FILE, f"'genres' is {_short(genres)}, expected a list of names")
    if not isinstance(doc.get("metrics", {}), dict):
        raise _Unusable(HEAD_FILE, f"'metrics' is {_kind(doc['metrics'])}, expected an object")


def _check_document(doc) -> None:
    if not isinstance(doc, dict):
        raise _Unusable(
            HEAD_FILE,
            f"the file holds {_kind(doc)}, expected a JSON object with 'format' and 'predictor'",
        )
    fmt = doc.get("format")
    if type(fmt) is not int or fmt != 1:
        raise _Unusable(
            HEAD_FILE, f"it is not a head this version can read (format {_short(fmt)}, not 1)"
        )
    if "predictor" not in doc:
        raise _Unusable(HEAD_FILE, "it has no 'predictor' description")
    _check_description(doc["predictor"])
    _check_head_fields(doc)


def _construct(desc: dict):
    """An estimator with the described params, classes, thresholds and at-least-one rule."""
    method = desc["method"]
    params = dict(desc.get("params", {}))
    for name in ("hidden", "dims"):
        if isinstance(params.get(name), list):
            params[name] = tuple(params[name])
    try:
        pred = predictor_class(method)(**params)
    except _LOAD_ERRORS as e:
        raise _Unusable(
            HEAD_FILE, f"the params do not fit a {method} head ({type(e).__name__}: {e})"
        ) from e
    pred.classes_ = list(desc["classes"])
    pred.thresholds_ = np.asarray(desc["thresholds"], dtype=np.float32)
    pred.at_least_one_ = bool(desc["at_least_one"])
    return pred


def _check_arrays(pred, arrays: dict, state: dict, prefix: str = "") -> None:
    """Raise _Unusable unless ``arrays`` hold numbers in the shapes ``pred``'s method stores."""
    for key, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise _Unusable(
                ARRAYS_FILE, f"array '{prefix}{key}' holds {what} values, expected numbers"
            )
    shapes = dict(_SHAPES.get(pred.method, {}))
    if pred.method == "mlp":
        n = state["n_layers"]
        for i in range(n):
            out = "g" if i == n - 1 else f"h{i + 1}"
            shapes[f"W{i}"] = ("d" if i == 0 else f"h{i}", out)
            shapes[f"b{i}"] = (out,)
    bound = {"g": len(pred.classes_)}
    k = getattr(pred, "k", None)
    if _is_count(k):
        bound["k1"] = k + 1
    for key, dims in shapes.items():
        name = f"'{prefix}{key}'"
        if key not in arrays:
            raise _Unusable(ARRAYS_FILE, f"array {name} of the {pred.method} head is missing")
        shape = arrays[key].shape
        expected = (
            "(" + ", ".join(str(bound.get(s, s)) for s in dims) + ("," * (len(dims) == 1)) + ")"
        )
        if len(shape) != len(dims) or 0 in shape:
            raise _Unusable(ARRAYS_FILE, f"array {name} has shape {shape}, expected {expected}")
        for sym, size in zip(dims, shape):
            if bound.setdefault(sym, size) != size:
                meaning = _SYMBOLS.get(sym, "the size of the layer before")
                raise _Unusable(
                    ARRAYS_FILE,
                    f"array {name} has shape {shape}, expected {expected} "
                    f"({bound[sym]} = {meaning})",
                )


def _input_dim(pred) -> int:
    if pred.method == "fusion":
        return int(sum(pred.dims_))
    if pred.method == "linear":
        return pred.coef_.shape[1]
    if pred.method == "mlp":
        return pred.weights_[0].shape[0]
    if pred.method == "zeroshot":
        return pred.W_.shape[0]
    return pred.X_.shape[1]  # knn, mlknn


def _try_scoring(pred) -> None:
    """Score one input of the head's dimension: the scores must be one per genre, in 0..1."""
    g = len(pred.classes_)
    if pred.method == "fusion":
        dp, dt = pred.dims_
        for which, part in pred.parts_.items():
            want = {"poster": dp, "plot": dt, "joint": dp + dt}[which]
            if _input_dim(part) != want:
                raise _Unusable(
                    ARRAYS_FILE,
                    f"the {which} part takes {_input_dim(part)}-d input but 'state.dims' "
                    f"{[dp, dt]} gives it {want}",
                )
    try:
        d = _input_dim(pred)
        x = np.full((1, d), 1.0 / np.sqrt(d), dtype=np.float32)
        with np.errstate(all="ignore"):
            P = np.asarray(pred.predict_proba(x))
    except PredictorError as e:
        raise _Unusable(ARRAYS_FILE, f"the head cannot score an input ({e})") from e
    except _LOAD_ERRORS as e:
        raise _Unusable(
            ARRAYS_FILE,
            f"the arrays do not fit the {pred.method} head described in {HEAD_FILE} "
            f"({type(e).__name__}: {e})",
        ) from e
    if P.shape != (1, g):
        raise _Unusable(
            ARRAYS_FILE,
            f"the arrays give {P.shape[-1] if P.ndim else 0} scores per item but 'classes' "
            f"names {g} genres",
        )
    if not (np.isfinite(P).all() and P.min() >= 0 and P.max() <= 1):
        raise _Unusable(
            ARRAYS_FILE, "the arrays give scores outside 0..1 (NaN or infinite weights)"
        )


def _rebuild(desc: dict, arrays: dict[str, np.ndarray]):
    """The fitted predictor of a checked description (see :func:`_check_description`)."""
    pred = _construct(desc)
    state = desc.get("state", {})
    _check_arrays(pred, arrays, state)
    if pred.method == "fusion":  # name a part's arrays with their prefix
        for which, part in state["parts"].items():
            prefix = f"{which}/"
            sub = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            _check_arrays(_construct(part), sub, part.get("state", {}), prefix)
    try:
        pred._load_state(state, arrays)
    except _Unusable as e:
        raise _Unusable(e.part, f"in a fused part, {e.what}") from e.__cause__
    except PredictorError as e:
        raise _Unusable(ARRAYS_FILE, f"the arrays cannot be used ({e})") from e
    except _LOAD_ERRORS as e:
        raise _Unusable(
            ARRAYS_FILE,
            f"the arrays do not fit the {pred.method} head described in {HEAD_FILE} "
            f"({type(e).__name__}: {e})",
        ) from e
    _try_scoring(pred)
    return pred


def predictor_from_state(desc: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted predictor from :func:`predictor_state` output.

    Every field is checked first; PredictorError names the field or array that is wrong.
    """
    _check_description(desc)
    return _rebuild(desc, arrays)


def read_head_json(directory: str | Path) -> dict:
    """The parsed, checked ``head.json`` of a saved head (PredictorError when missing, unreadable
    or not a valid head description)."""
    directory = Path(directory)
    path = directory / HEAD_FILE
    try:
        if path.exists() and not path.is_file():  # never read a FIFO or a device
            raise ValueError("not a regular file")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise PredictorError(f"No saved head at {directory} (head.json missing).") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _Unusable(
            HEAD_FILE, f"it cannot be read as JSON ({e})", directory, _retrain_fix(directory, None)
        ) from e
    try:
        _check_document(doc)
    except _Unusable as e:
        raise _Unusable(e.part, e.what, directory, _retrain_fix(directory, doc)) from e.__cause__
    return doc


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, refusing pickled objects."""
    if not path.is_file():
        raise _Unusable(ARRAYS_FILE, "the file is missing" if not path.exists() else "not a file")

    try:
        loaded = np.load(path, allow_pickle=False)
    except (*_NPY_ERRORS, ValueError, zipfile.BadZipFile) as e:
        raise _Unusable(ARRAYS_FILE, f"it is not an .npz archive of arrays ({e})") from e
    if not isinstance(loaded, NpzFile):
        raise _Unusable(ARRAYS_FILE, "it holds one bare array, expected an .npz archive")
    with loaded as npz:
        try:
            return {k: npz[k] for k in npz.files}
        except ValueError as e:
            if "pickle" not in str(e):
                raise _Unusable(ARRAYS_FILE, f"it cannot be read ({e})") from e
            raise _Unusable(
                ARRAYS_FILE,
                "it holds pickled Python objects, which are never loaded (a head stores plain "
                "numeric arrays only)",
            ) from e
        except (*_NPY_ERRORS, KeyError, zipfile.BadZipFile) as e:
            raise _Unusable(ARRAYS_FILE, f"it cannot be read ({e})") from e


def load_predictor(directory: str | Path):
    """(fitted predictor, head.json document) from a directory written by :func:`save_predictor`.

    A damaged or foreign head raises PredictorError naming the file, what is wrong and the fix.
    """
    directory = Path(directory)
    doc = read_head_json(directory)
    try:
        pred = _rebuild(doc["predictor"], _read_arrays(directory / ARRAYS_FILE))
        dims = [e["dim"] for e in doc.get("encoders", {}).values()]
        if dims and _input_dim(pred) != sum(dims):
            raise _Unusable(
                ARRAYS_FILE,
                f"the head takes {_input_dim(pred)}-d input but its 'encoders' in {HEAD_FILE} "
                f"give {'+'.join(map(str, dims))}",
            )
    except _Unusable as e:
        raise _Unusable(e.part, e.what, directory, _retrain_fix(directory, doc)) from e.__cause__
    return pred, doc
