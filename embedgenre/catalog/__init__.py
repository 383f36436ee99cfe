"""Catalogs: movies and their genres read from a folder or a CSV file, checked and cleaned.

This package holds reading only: the genre vocabulary an index keeps across runs is
:mod:`embedgenre.vocabulary`, and train/test splits are :mod:`embedgenre.splits`. Its modules,
along the data flow:

- :mod:`~embedgenre.catalog.rows`: the one CSV row reader (every CSV layout and
  ``posters download`` read rows through it);
- a module per layout: :mod:`~embedgenre.catalog.movies_csv`, :mod:`~embedgenre.catalog.kaggle`,
  :mod:`~embedgenre.catalog.mmimdb`, :mod:`~embedgenre.catalog.library`;
- :mod:`~embedgenre.catalog.text`: the row cleaning (:func:`clean_item`) and cell normalisers;
- :mod:`~embedgenre.catalog.items`: :class:`Item` and :class:`Catalog`;
- :mod:`~embedgenre.catalog.reader`: :func:`read_catalog`, which finds the layout.

``read_catalog(path)`` turns a folder (or a CSV file) of movies into a :class:`Catalog`: items with
an id, title, year, genres, plot and poster path, plus the genre vocabulary. Supported layouts:

- ``"csv"``: ``movies.csv`` with ``imdb_id`` (or ``id``), ``title``, ``year``, ``genres``
  (``|``-separated), ``plot``, ``poster`` (path relative to the CSV's folder). Other column names
  are mapped with ``columns={"genres": "tags", ...}``.
- ``"kaggle"``: the Kaggle "Movie Genre from its Poster" ``MovieGenre.csv`` (``imdbId``, ``Title``
  with the year in brackets, ``Genre``, ``Poster`` URL); posters are read from
  ``<folder>/posters/tt<7 digits>.jpg`` (where ``embedgenre posters download`` puts them).
- ``"mmimdb"``: MM-IMDb, ``<id>.json`` (``genres`` list, ``plot`` list or string) with
  ``<id>.jpeg`` beside it, in the folder or its ``dataset/`` subfolder.
- ``"library"``: a Kodi / Jellyfin / Emby media library as it stands, NFO files and posters beside
  the videos, searched recursively (:mod:`embedgenre.library.nfo`); see :func:`read_library`.

Row-level problems (duplicate id, no genres, bad year, control characters in an id, ...) are
handled and listed in ``Catalog.problems``; only problems that make the whole catalog unusable raise
``CatalogError``. A CSV field longer than ``MAX_FIELD_CHARS`` is cut to that length with a
:class:`CatalogWarning`. Poster file names come from ids through :func:`poster_stem` only, so an id
is never a path. Every layout's rows pass through :func:`clean_item`, which removes control and
text-direction characters from ids, titles, plots and genres and leaves out genre names longer
than ``MAX_GENRE_CHARS``; a CSV row that an unclosed quote made swallow the rows after it is
skipped with a :class:`CatalogWarning` naming its line.
"""

from __future__ import annotations

from embedgenre.catalog.items import Catalog, CatalogWarning, Item, plot_text
from embedgenre.catalog.library import read_library
from embedgenre.catalog.movies_csv import POSTER_EXTENSIONS
from embedgenre.catalog.reader import (
    LAYOUT_ALIASES,
    LAYOUTS,
    OTHER_GENRE,
    RARE_MODES,
    read_catalog,
)
from embedgenre.catalog.rows import (
    FIELDS,
    MAX_FIELD_CHARS,
    REQUIRED_FIELDS,
    parse_columns,
    read_csv_table,
)
from embedgenre.catalog.text import (
    IMDB_GENRES,
    MAX_GENRE_CHARS,
    POSTER_STEM_CHARS,
    brief,
    clean_id,
    clean_item,
    clean_text,
    has_hidden_controls,
    normalise_genre,
    normalise_imdb_id,
    parse_year,
    poster_stem,
    shown,
    split_genres,
    split_title_year,
    unusable_id,
)

__all__ = [
    "FIELDS",
    "IMDB_GENRES",
    "LAYOUTS",
    "LAYOUT_ALIASES",
    "MAX_FIELD_CHARS",
    "MAX_GENRE_CHARS",
    "OTHER_GENRE",
    "POSTER_EXTENSIONS",
    "POSTER_STEM_CHARS",
    "RARE_MODES",
    "REQUIRED_FIELDS",
    "Catalog",
    "CatalogWarning",
    "Item",
    "brief",
    "clean_id",
    "clean_item",
    "clean_text",
    "has_hidden_controls",
    "normalise_genre",
    "normalise_imdb_id",
    "parse_columns",
    "parse_year",
    "plot_text",
    "poster_stem",
    "read_catalog",
    "read_csv_table",
    "read_library",
    "shown",
    "split_genres",
    "split_title_year",
    "unusable_id",
]
