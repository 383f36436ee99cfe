"""Heads: predictors trained on an index's embeddings and saved inside it, found by name.

- :mod:`.training`: fit a :class:`~embedgenre.predictors.spec.HeadSpec` on the index's items;
- :mod:`.saved`: the :class:`Head` record, saving, listing, loading, compatibility with the index;
- :mod:`.choose`: the default head for the inputs a query gives;
- :mod:`.files`: ``head.json`` + ``arrays.npz`` on disk.

Answering queries with a head is :mod:`embedgenre.predict`.
"""

from __future__ import annotations

from embedgenre.heads.choose import HeadCache, choose_head
from embedgenre.heads.files import load_predictor, save_predictor
from embedgenre.heads.saved import (
    Head,
    bind_head,
    check_compatible,
    list_heads,
    load_head,
    save_head,
)
from embedgenre.heads.training import train_head

__all__ = [
    "Head",
    "HeadCache",
    "bind_head",
    "check_compatible",
    "choose_head",
    "list_heads",
    "load_head",
    "load_predictor",
    "save_head",
    "save_predictor",
    "train_head",
]
