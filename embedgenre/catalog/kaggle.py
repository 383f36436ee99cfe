"""The Kaggle "Movie Genre from its Poster" layout: ``MovieGenre.csv`` with ``imdbId``, ``Title``
(the year in brackets), ``Genre`` and a ``Poster`` URL.

Its rows are read by the CSV layout (:mod:`embedgenre.catalog.movies_csv`) through the one row
reader; what is Kaggle's own is here: how its header is recognised, and where its posters are
(``<folder>/posters/tt<7 digits>.jpg``, where ``embedgenre posters download`` puts them; the
``Poster`` column is a URL, never a file).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from embedgenre.catalog.text import column_key, poster_stem

KAGGLE_FILE = "MovieGenre.csv"


def is_kaggle_header(header: Sequence[str]) -> bool:
    """True for a header with ``imdbId`` and ``Genre`` (and no ``genres``): Kaggle's file."""
    keys = {column_key(h) for h in header}
    return "imdbid" in keys and "genre" in keys and "genres" not in keys


def kaggle_poster(root: Path, item_id: str) -> Path:
    """Where a Kaggle movie's poster is expected when none was found: ``posters/<id>.jpg``."""
    return root / "posters" / f"{poster_stem(item_id)}.jpg"
