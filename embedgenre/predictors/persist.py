"""Saving and loading fitted predictors as JSON + arrays (``.npz``, no pickles).

A predictor's description (``head.json`` part) holds its method, constructor params, classes,
thresholds, the at-least-one rule and method-specific state; arrays go to one ``arrays.npz``
loaded with ``allow_pickle=False``. Fusion heads nest their parts with ``<part>/`` array prefixes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from embedgenre.errors import PredictorError

ARRAYS_FILE = "arrays.npz"


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


def predictor_from_state(desc: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted predictor from :func:`predictor_state` output."""
    from embedgenre.predictors.factory import predictor_class

    cls = predictor_class(desc["method"])
    params = dict(desc.get("params", {}))
    if "hidden" in params and isinstance(params["hidden"], list):
        params["hidden"] = tuple(params["hidden"])
    if "dims" in params and isinstance(params["dims"], list):
        params["dims"] = tuple(params["dims"])
    pred = cls(**params)
    pred.classes_ = list(desc["classes"])
    pred.thresholds_ = np.asarray(desc["thresholds"], dtype=np.float32)
    pred.at_least_one_ = bool(desc["at_least_one"])
    try:
        pred._load_state(desc.get("state", {}), arrays)
    except KeyError as e:
        raise PredictorError(
            f"Saved head is missing array {e}; it is incomplete, train it again."
        ) from e
    return pred


def save_predictor(pred, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``head.json`` (description + ``extra``) and ``arrays.npz`` into ``directory``.

    Written beside the target, then renamed into place, so a crash leaves no half-written head.
    """
    directory = Path(directory)
    desc, arrays = predictor_state(pred)
    doc = {"format": 1, **_json_safe(extra or {}), "predictor": desc}
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=False)
    np.savez(tmp / ARRAYS_FILE, **arrays)
    (tmp / "head.json").write_text(json.dumps(doc, indent=2) + "\n")
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(old)
        tmp.rename(directory)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(directory)
    return directory


def read_head_json(directory: str | Path) -> dict:
    """The parsed ``head.json`` of a saved head (PredictorError when missing or unreadable)."""
    path = Path(directory) / "head.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise PredictorError(f"No saved head at {directory} (head.json missing).") from e
    except (OSError, json.JSONDecodeError) as e:
        raise PredictorError(f"Cannot read {path}: {e}; train the head again.") from e
    if doc.get("format") != 1 or "predictor" not in doc:
        raise PredictorError(
            f"{path} is not a head this version can read (format {doc.get('format')})."
        )
    return doc


def load_predictor(directory: str | Path):
    """(fitted predictor, head.json document) from a directory written by :func:`save_predictor`."""
    doc = read_head_json(directory)
    try:
        with np.load(Path(directory) / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise PredictorError(f"Cannot read the arrays of head {directory}: {e}") from e
    return predictor_from_state(doc["predictor"], arrays), doc
