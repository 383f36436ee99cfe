"""The media-library layout: a Kodi / Jellyfin / Emby library as it stands, NFO files and
posters beside the videos. Reading the library is :mod:`embedgenre.library.nfo`'s; this module
turns its movies into catalog items."""

from __future__ import annotations

from pathlib import Path

from embedgenre.catalog.items import Item
from embedgenre.catalog.text import (
    clean_item,
    normalise_imdb_id,
    parse_year,
    split_genres,
    split_title_year,
)
from embedgenre.library.nfo import LibraryMovie, name_ids, scan_library


def read_library(folder: str | Path) -> tuple[list[tuple[LibraryMovie, Item]], list[str]]:
    """The movies of a media library folder, each with its catalog item, and the problems met.

    An item's id is the NFO's IMDb id, else its TMDB id (``tmdb<number>``), else an id in the
    folder name (``[imdbid-tt...]``), else ``lib-`` and a hash of the movie's path inside the
    library. Title and year come from the NFO, else from the name ("Title (Year)"). A movie
    without an NFO, or whose NFO has no ``<genre>``, is kept unlabelled (in a library that is
    no problem: such movies are the ones to tag). The problems are the movies skipped, why.
    """
    scan = scan_library(folder)
    problems = list(scan.problems)
    out: list[tuple[LibraryMovie, Item]] = []
    first: dict[str, str] = {}
    for movie in scan.movies:
        data = movie.data
        name, ids_in_name = name_ids(movie.name)
        ids = {**ids_in_name, **(data.ids if data else {})}
        item_id = normalise_imdb_id(ids.get("imdb", "")) or (
            f"tmdb{ids['tmdb']}" if ids.get("tmdb", "").isdigit() else f"lib-{movie.folder_hash}"
        )
        if item_id in first:
            problems.append(f"{movie.key}: same id {item_id} as {first[item_id]}; kept the first")
            continue
        first[item_id] = movie.key
        title, name_year = split_title_year(name)
        year, bad_year = parse_year(data.year if data else None)
        if bad_year:
            problems.append(f"{movie.key}: year {data.year!r} is not a year; set to None")
        genres = split_genres(data.genres) if data else ()
        item = Item(
            item_id,
            (data.title if data else None) or title or None,
            year if year is not None else name_year,
            genres,
            data.plot if data else None,
            movie.poster,
        )
        item = clean_item(item, movie.key, problems)
        if item is not None:
            out.append((movie, item))
    return out, problems
