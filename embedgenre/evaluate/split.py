"""The evaluation's split of the items: test, training, and a validation part when asked for.

Drawn by iterative stratification (seeded), or read from a split document: ``{"train": ids,
"test": ids, "validation"?: ids}`` (what ``split.json`` of an earlier report holds). Only items
in the evaluation's universe (those with the embeddings and labels it needs) are used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedgenre.errors import EmbedgenreError
from embedgenre.splits import iterative_split


@dataclass
class Split:
    """Item positions (sorted int64): ``val`` is a part of ``train`` or None (out-of-fold
    predictions instead); ``doc`` is the JSON document saved with the report."""

    train: np.ndarray
    test: np.ndarray
    val: np.ndarray | None
    doc: dict


def _rows_of(document: dict, name: str, pos: dict[str, int], inside: set[int]) -> np.ndarray:
    ids = document.get(name) or []
    missing = [i for i in ids if i not in pos]
    if missing:
        raise EmbedgenreError(
            f"split file names {len(missing)} {name} id(s) the index does not hold "
            f"(first: {missing[0]}); make the split from this index's ids."
        )
    return np.array(sorted(pos[i] for i in ids if pos[i] in inside), dtype=np.int64)


def make_split(
    ids: list[str],
    Y: np.ndarray,
    universe: np.ndarray,
    *,
    document: dict | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    folds: int | None = 5,
    val_size: float = 0.15,
) -> Split:
    """Split ``universe`` (item positions) into train and test, from ``document`` or drawn.

    A validation part is carved out of train (``val_size``, seed + 1) only when ``folds`` is
    None and the document names none.
    """
    if document is not None:
        pos = {item_id: i for i, item_id in enumerate(ids)}
        inside = set(universe.tolist())
        train = _rows_of(document, "train", pos, inside)
        test = _rows_of(document, "test", pos, inside)
        if np.intersect1d(train, test).size:
            raise EmbedgenreError("split file puts some ids in both 'train' and 'test'.")
        if len(train) < 2 or len(test) < 1:
            raise EmbedgenreError("split file needs at least 2 train ids and 1 test id.")
        val = _rows_of(document, "validation", pos, inside) if document.get("validation") else None
        if val is not None and np.setdiff1d(val, train).size:
            raise EmbedgenreError("split file's 'validation' ids must be part of 'train'.")
    else:
        a, b = iterative_split(Y[universe], test_size=test_size, seed=seed)
        train, test = universe[a], universe[b]
        val = None
    if val is None and not folds:
        a, b = iterative_split(Y[train], test_size=val_size, seed=seed + 1)
        val = train[b]
    doc = {
        "seed": seed,
        "test_size": test_size if document is None else None,
        "folds": None if val is not None else folds,
        "train": [ids[i] for i in train],
        "validation": [] if val is None else [ids[i] for i in val],
        "test": [ids[i] for i in test],
    }
    return Split(train, test, val, doc)


def read_split(path: str | Path) -> dict:
    """Read a split file (``split.json`` of a report, or written by hand): ``{"train": [ids], "test": [ids]}``.

    ``validation`` (ids, a subset of ``train``) is optional.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EmbedgenreError(
            f"cannot read split file {path}: {e}. Give a JSON file like "
            '{"train": ["tt0111161", ...], "test": [...]} (the split.json of a report).'
        ) from e
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("train"), list)
        or not isinstance(doc.get("test"), list)
    ):
        raise EmbedgenreError(
            f"split file {path} must hold a JSON object with lists 'train' and 'test' of item ids "
            "(and optionally 'validation', a part of 'train'); see split.json in any report."
        )
    return doc
