"""``read_catalog``: find a catalog's layout, read it with that layout's module, keep the genres
asked for."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from embedgenre.catalog.items import Catalog, Item, genre_vocabulary
from embedgenre.catalog.kaggle import KAGGLE_FILE
from embedgenre.catalog.library import read_library
from embedgenre.catalog.mmimdb import read_mmimdb
from embedgenre.catalog.movies_csv import read_csv_layout
from embedgenre.catalog.rows import FIELDS
from embedgenre.errors import CatalogError, NoSuchCatalogError
from embedgenre.library.nfo import looks_like_library
from embedgenre.vocabulary import by_frequency

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "csv", "kaggle", "mmimdb", "library")
# Other spellings accepted for ``layout``.
LAYOUT_ALIASES = {
    "movies-csv": "csv",
    "movies_csv": "csv",
    "mm-imdb": "mmimdb",
    "moviegenre": "kaggle",
    "kodi": "library",
    "jellyfin": "library",
    "emby": "library",
    "nfo": "library",
}
RARE_MODES = ("drop", "other")
OTHER_GENRE = "Other"


def read_catalog(
    path: str | Path,
    layout: str = "auto",
    columns: Mapping[str, str] | None = None,
    top_genres: int | None = None,
    min_genre_count: int | None = None,
    *,
    rare: str = "drop",
    genre_sep: str = "|",
    encoding: str | None = None,
) -> Catalog:
    """Read a catalog folder or CSV file into a :class:`Catalog`.

    ``layout``: ``"auto"`` (detect), ``"csv"``, ``"kaggle"``, ``"mmimdb"`` or ``"library"``
    (see :mod:`embedgenre.catalog`).
    ``columns`` maps fields (id, title, year, genres, plot, poster) to CSV column names.
    ``top_genres=N`` keeps the N most frequent genres, ``min_genre_count=M`` keeps genres with at
    least M items; the others are dropped from items' genres (``rare="drop"``) or replaced by
    ``"Other"`` (``rare="other"``). Items are never dropped for their genres.
    ``genre_sep`` splits a genre cell; ``encoding`` forces a CSV encoding (default: UTF-8, falling
    back to cp1252/latin-1 with a warning).
    """
    layout = _checked_options(layout, columns, top_genres, min_genre_count, rare, genre_sep)
    path = Path(path)
    if not path.exists():
        raise NoSuchCatalogError(
            f"Catalog {path} does not exist.",
            "Fix: give a folder holding movies.csv (or MovieGenre.csv, or MM-IMDb .json files), "
            "or a CSV file.",
            param="path",
        )
    path = Path(os.path.abspath(path))  # every path derived from it is absolute, without ".."
    layout, source = _find_source(path, layout)
    if layout == "mmimdb":
        items, problems = read_mmimdb(source)
        root = source.absolute()
    elif layout == "library":
        movies, problems = read_library(source)
        items, root = [item for _, item in movies], source.absolute()
    else:
        items, problems, layout = read_csv_layout(source, layout, columns, genre_sep, encoding)
        root = source.parent.absolute()
    if not items:
        raise CatalogError(
            f"Catalog {source} holds no movies. Fix: add rows (one movie per row, with an id and "
            "genres), or point at the right file or folder."
        )
    if top_genres is not None or min_genre_count is not None:
        items = _restrict_genres(items, top_genres, min_genre_count, rare, problems)
    for p in problems:
        logger.debug("catalog: %s", p)
    if problems:
        logger.info(
            "catalog %s: %d row problem(s) handled, the first: %s",
            source,
            len(problems),
            problems[0],
        )
    return Catalog(
        root=root,
        items=items,
        genres=genre_vocabulary(items),
        problems=problems,
        layout=layout,
        source=source.absolute(),
    )


def _checked_options(
    layout: str,
    columns: Mapping[str, str] | None,
    top_genres: int | None,
    min_genre_count: int | None,
    rare: str,
    genre_sep: str,
) -> str:
    """The layout's own name (aliases resolved), once every option is known to be valid."""
    layout = LAYOUT_ALIASES.get(layout, layout)
    if layout not in LAYOUTS:
        raise CatalogError(
            f"Unknown catalog layout {layout!r}; choose one of {', '.join(LAYOUTS)}.",
            param="layout",
        )
    if rare not in RARE_MODES:
        raise CatalogError(
            f"Unknown way {rare!r} to treat rare genres;",
            "choose 'drop' (remove them) or 'other' (fold them into 'Other').",
            param="rare",
        )
    for name, value in (("top_genres", top_genres), ("min_genre_count", min_genre_count)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise CatalogError(
                f"The genre limit must be a positive integer or unset, got {value!r}.", param=name
            )
    if not genre_sep:
        raise CatalogError(
            "The genre separator is empty;", "give one such as '|' or ','.", param="genre_sep"
        )
    if columns:
        unknown = sorted(set(columns) - set(FIELDS))
        if unknown:
            raise CatalogError(
                f"Unknown field(s) in the column mapping: {', '.join(unknown)};",
                f"the fields are {', '.join(FIELDS)} (map each to a column name, e.g. "
                "genres=tags).",
                param="columns",
            )
    return layout


def _find_source(path: Path, layout: str) -> tuple[str, Path]:
    """(layout, file or folder to read); ``layout`` may still be "auto" for a CSV (sniffed later)."""
    if path.is_file():
        if layout == "mmimdb":
            return layout, path.parent
        if path.suffix.lower() == ".json":
            return "mmimdb", path.parent
        return layout, path
    mm_dir = path / "dataset" if (path / "dataset").is_dir() else path
    csvs = sorted(p for p in path.glob("*.csv") if p.is_file())
    if layout in ("mmimdb", "library"):
        return layout, mm_dir if layout == "mmimdb" else path
    for name in ("movies.csv", KAGGLE_FILE):
        if (path / name).is_file():
            return layout, path / name
    if layout == "auto" and any(mm_dir.glob("*.json")):
        return "mmimdb", mm_dir
    if layout == "auto" and looks_like_library(path):
        return "library", path
    if len(csvs) == 1:
        return layout, csvs[0]
    found = ", ".join(p.name for p in csvs) or "no CSV files"
    raise CatalogError(
        f"Cannot find a catalog in {path}: looked for movies.csv, MovieGenre.csv, a single *.csv "
        f"file, MM-IMDb <id>.json files, or a media library's NFO and video files (found "
        f"{found}). Fix: pass the CSV file itself, or rename it to movies.csv."
    )


def _restrict_genres(
    items: list[Item],
    top_genres: int | None,
    min_genre_count: int | None,
    rare: str,
    problems: list[str],
) -> list[Item]:
    counts = Counter(g for it in items for g in it.genres)
    ranked = by_frequency(it.genres for it in items)
    keep = set(ranked[:top_genres] if top_genres is not None else ranked)
    if min_genre_count is not None:
        keep = {g for g in keep if counts[g] >= min_genre_count}
    rare_genres = [g for g in ranked if g not in keep]
    if not rare_genres:
        return items
    logger.info(
        "%s %d rare genre(s): %s", "dropping" if rare == "drop" else "folding into 'Other'",
        len(rare_genres), ", ".join(rare_genres),
    )  # fmt: skip
    out: list[Item] = []
    emptied = 0
    for it in items:
        kept = tuple(g for g in it.genres if g in keep)
        if rare == "other" and len(kept) < len(it.genres) and OTHER_GENRE not in kept:
            kept = kept + (OTHER_GENRE,)
        if it.genres and not kept:
            emptied += 1
        out.append(it if kept == it.genres else _replace_genres(it, kept))
    if emptied:
        problems.append(
            f"{emptied} item(s) had only rare genres ({', '.join(rare_genres)}); kept with no genres"
        )
    return out


def _replace_genres(item: Item, genres: tuple[str, ...]) -> Item:
    return replace(item, genres=genres)
