"""The CSV layouts: ``movies.csv`` (``imdb_id`` or ``id``, ``title``, ``year``, ``genres``
``|``-separated, ``plot``, ``poster`` relative to the CSV's folder) and Kaggle's
``MovieGenre.csv`` (:mod:`embedgenre.catalog.kaggle`), both read through the one row reader
(:mod:`embedgenre.catalog.rows`). A poster not named in the file is looked for as
``<folder>/posters/<id>.<ext>`` or ``<folder>/<id>.<ext>``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from embedgenre.catalog.items import CatalogWarning, Item
from embedgenre.catalog.kaggle import is_kaggle_header, kaggle_poster
from embedgenre.catalog.rows import Row, Table, open_table, read_rows
from embedgenre.catalog.text import brief, clean_item, column_key, poster_stem
from embedgenre.errors import CatalogError

POSTER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def read_csv_layout(
    source: Path,
    layout: str,
    columns: Mapping[str, str] | None,
    genre_sep: str,
    encoding: str | None,
) -> tuple[list[Item], list[str], str]:
    """(items, problems, layout) of a CSV catalog; ``layout`` "auto" becomes "kaggle" or "csv"
    from the header."""
    table = open_table(source, columns, encoding)
    if layout == "auto":
        layout = "kaggle" if is_kaggle_header(table.header) and not columns else "csv"
    kaggle = layout == "kaggle"
    root = source.parent.absolute()
    finder = PosterFinder(root)
    problems = list(table.problems)
    id_is_imdb = kaggle or "imdb" in column_key(table.columns["id"] or "")
    rows = read_rows(
        table, imdb_ids=id_is_imdb, title_years=kaggle, genre_sep=genre_sep, problems=problems
    )
    items: list[Item] = []
    for row in rows:
        if not row.genres:
            problems.append(f"{row.where}: {row.id} has no genres; kept with none")
        poster = _poster(row, kaggle, root, finder, problems)
        item = Item(row.id, row.title, row.year, row.genres, row.plot, poster)
        item = clean_item(item, row.where, problems)
        if item is not None:
            items.append(item)
    _warn_if_separator_looks_wrong(items, table, genre_sep)
    return items, problems, layout


def _poster(
    row: Row, kaggle: bool, root: Path, finder: PosterFinder, problems: list[str]
) -> Path | None:
    """The row's poster path: its poster cell, else a file named after its id."""
    cell = "" if kaggle else row.poster
    if "\0" in cell:
        problems.append(
            f"{row.where}: {brief(row.id)} has a poster path with a NUL character, which no "
            "file name holds; kept with no poster"
        )
        return None
    if cell and not _URL_RE.match(cell):
        return Path(os.path.abspath(root / cell))
    poster = finder.find(row.id)
    if poster is None and kaggle:
        poster = kaggle_poster(root, row.id)
    return poster


def _is_file(entry: os.DirEntry) -> bool:
    """``entry.is_file()``, False for a link that cannot be followed (a loop, no permission)."""
    try:
        return entry.is_file()
    except OSError:
        return False


class PosterFinder:
    """Finds ``<root>/posters/<id>.<ext>`` (or ``<root>/<id>.<ext>``), listing each folder once."""

    def __init__(self, root: Path):
        self._stems: dict[str, Path] = {}
        for folder in (root, root / "posters"):  # later folders win: posters/ first
            if not folder.is_dir():
                continue
            try:
                with os.scandir(folder) as entries:
                    for e in entries:
                        stem, ext = os.path.splitext(e.name)
                        if ext.lower() in POSTER_EXTENSIONS and _is_file(e):
                            self._stems[stem.lower()] = Path(e.path).absolute()
            except OSError as e:
                raise CatalogError(
                    f"Cannot list the poster folder {folder} ({e.strerror or e}). Fix: make it "
                    "readable, or name each poster's path in the catalog's poster column."
                ) from e

    def find(self, item_id: str) -> Path | None:
        keys = [poster_stem(item_id).lower(), item_id.lower()]
        if item_id.lower().startswith("tt"):
            digits = item_id[2:]
            keys += [digits, digits.lstrip("0")]
        return next((self._stems[k] for k in keys if k in self._stems), None)


def _warn_if_separator_looks_wrong(items: list[Item], table: Table, genre_sep: str) -> None:
    if not items or any(len(it.genres) > 1 for it in items):
        return
    cells = [(row.get(table.columns["genres"]) or "") for _, row in table.rows]
    for other in (",", ";", "|", "/"):
        if other != genre_sep and sum(other in c for c in cells) > len(cells) // 2:
            message = CatalogWarning(
                f"{table.source}: no movie has more than one genre, but most genre cells contain "
                f"{other!r}.",
                f"Fix: set the genre separator to {other!r}.",
                param="genre_sep",
            )
            warnings.warn(message, stacklevel=5)
            return
