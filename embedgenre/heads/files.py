"""A head on disk: ``head.json`` (the predictor's description and what it was trained on) and
``arrays.npz`` (its arrays, loaded with ``allow_pickle=False``; never pickles).

Loading checks the document and the arrays before use (:mod:`embedgenre.predictors.state`), so
a damaged or foreign head raises PredictorError naming the file, what is wrong and how to
replace it.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from tokenize import TokenError

import numpy as np
from numpy.lib.npyio import NpzFile

from embedgenre.errors import PredictorError
from embedgenre.names import HEAD_MODALITIES, METHODS
from embedgenre.predictors.state import (
    ARRAYS_FILE,
    HEAD_FILE,
    Unusable,
    check_description,
    is_count,
    json_safe,
    kind_of,
    predictor_state,
    rebuild,
    short,
)
from embedgenre.store import atomic

_HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# what np.load raises for a damaged array besides ValueError (a garbled header is parsed as
# Python literals)
_NPY_ERRORS = (OSError, EOFError, SyntaxError, TokenError, MemoryError)


def _retrain_fix(directory: Path, doc) -> str:
    """How to replace a damaged head: the train command when it lives in an index's heads/."""
    what = "The head is damaged or was written by another program"
    if directory.parent.name != "heads":
        return f"{what}; train and save it again"
    doc = doc if isinstance(doc, dict) else {}
    method, modality, fusion, name = (doc.get(k) for k in ("method", "modality", "fusion", "name"))
    opts = ""
    if method in METHODS:
        opts += f" --method {method}"
    if modality in HEAD_MODALITIES:
        opts += f" --modality {modality}"
    if modality == "both" and fusion in ("early", "late"):
        opts += f" --fusion {fusion}"
    if isinstance(name, str) and _HEAD_NAME.match(name):
        opts += f" --name {name}"
    return f"{what}; train it again: `embedgenre train {directory.parent.parent}{opts}`"


def _check_head_fields(doc: dict) -> None:
    """The fields a head saved in an index adds: name, modality, encoders, genres, metrics (each
    checked when present; a head with embedding sets needs the first four)."""
    if "encoders" in doc:
        missing = [k for k in ("name", "modality", "genres") if k not in doc]
        if missing:
            raise Unusable(HEAD_FILE, f"it has 'encoders' but no {', '.join(map(repr, missing))}")
    name, modality = doc.get("name", "-"), doc.get("modality", "poster")
    if not isinstance(name, str) or not name:
        raise Unusable(HEAD_FILE, f"'name' is {short(name)}, expected the head's name")
    if modality not in HEAD_MODALITIES:
        raise Unusable(
            HEAD_FILE,
            f"'modality' is {short(modality)}, expected one of {', '.join(HEAD_MODALITIES)}",
        )
    encoders = doc.get("encoders", {})
    wanted = {"poster", "plot"} if modality == "both" else {modality}
    if not isinstance(encoders, dict) or ("encoders" in doc and set(encoders) != wanted):
        raise Unusable(
            HEAD_FILE,
            f"'encoders' is {short(encoders)}, expected an object with the "
            f"{' and '.join(sorted(wanted))} embedding set(s) of a {modality} head",
        )
    for m, enc in encoders.items():
        if not (
            isinstance(enc, dict)
            and isinstance(enc.get("encoder"), str)
            and is_count(enc.get("dim"))
        ):
            raise Unusable(
                HEAD_FILE,
                f"'encoders.{m}' is {short(enc)}, expected an object with 'encoder' (a name) "
                "and 'dim' (a positive integer)",
            )
    genres = doc.get("genres", [])
    if not (isinstance(genres, list) and all(isinstance(g, str) for g in genres)):
        raise Unusable(HEAD_FILE, f"'genres' is {short(genres)}, expected a list of names")
    if not isinstance(doc.get("metrics", {}), dict):
        raise Unusable(HEAD_FILE, f"'metrics' is {kind_of(doc['metrics'])}, expected an object")


def _check_document(doc) -> None:
    if not isinstance(doc, dict):
        raise Unusable(
            HEAD_FILE,
            f"the file holds {kind_of(doc)}, expected a JSON object with 'format' and 'predictor'",
        )
    fmt = doc.get("format")
    if type(fmt) is not int or fmt != 1:
        raise Unusable(
            HEAD_FILE, f"it is not a head this version can read (format {short(fmt)}, not 1)"
        )
    if "predictor" not in doc:
        raise Unusable(HEAD_FILE, "it has no 'predictor' description")
    check_description(doc["predictor"])
    _check_head_fields(doc)


def save_predictor(pred, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``arrays.npz`` and then ``head.json`` (description + ``extra``) into ``directory``.

    Each file is written atomically; heads of an index go to a new generation folder that only
    the manifest commit publishes (:func:`embedgenre.heads.saved.save_head`).
    """
    directory = Path(directory)
    desc, arrays = predictor_state(pred)
    doc = {"format": 1, **json_safe(extra or {}), "predictor": desc}
    atomic.save_npz(directory / ARRAYS_FILE, **arrays)
    atomic.write_json(directory / "head.json", doc)  # last: marks a complete head
    return directory


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
        raise Unusable(
            HEAD_FILE, f"it cannot be read as JSON ({e})", directory, _retrain_fix(directory, None)
        ) from e
    try:
        _check_document(doc)
    except Unusable as e:
        raise Unusable(e.part, e.problem, directory, _retrain_fix(directory, doc)) from e.__cause__
    return doc


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, refusing pickled objects."""
    if not path.is_file():
        raise Unusable(ARRAYS_FILE, "the file is missing" if not path.exists() else "not a file")

    try:
        loaded = np.load(path, allow_pickle=False)
    except (*_NPY_ERRORS, ValueError, zipfile.BadZipFile) as e:
        raise Unusable(ARRAYS_FILE, f"it is not an .npz archive of arrays ({e})") from e
    if not isinstance(loaded, NpzFile):
        raise Unusable(ARRAYS_FILE, "it holds one bare array, expected an .npz archive")
    with loaded as npz:
        try:
            return {k: npz[k] for k in npz.files}
        except ValueError as e:
            if "pickle" not in str(e):
                raise Unusable(ARRAYS_FILE, f"it cannot be read ({e})") from e
            raise Unusable(
                ARRAYS_FILE,
                "it holds pickled Python objects, which are never loaded (a head stores plain "
                "numeric arrays only)",
            ) from e
        except (*_NPY_ERRORS, KeyError, zipfile.BadZipFile) as e:
            raise Unusable(ARRAYS_FILE, f"it cannot be read ({e})") from e


def load_predictor(directory: str | Path):
    """(fitted predictor, head.json document) from a directory written by :func:`save_predictor`.

    A damaged or foreign head raises PredictorError naming the file, what is wrong and the fix.
    """
    directory = Path(directory)
    doc = read_head_json(directory)
    try:
        pred = rebuild(doc["predictor"], _read_arrays(directory / ARRAYS_FILE))
        dims = [e["dim"] for e in doc.get("encoders", {}).values()]
        if dims and pred.n_features_in_ != sum(dims):
            raise Unusable(
                ARRAYS_FILE,
                f"the head takes {pred.n_features_in_}-d input but its 'encoders' in {HEAD_FILE} "
                f"give {'+'.join(map(str, dims))}",
            )
    except Unusable as e:
        raise Unusable(e.part, e.problem, directory, _retrain_fix(directory, doc)) from e.__cause__
    return pred, doc
