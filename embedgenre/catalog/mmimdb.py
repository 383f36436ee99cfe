"""The MM-IMDb layout: ``<id>.json`` records (``genres`` list, ``plot`` list or string, ``title``,
``year``) with ``<id>.jpeg`` beside each, in the folder or its ``dataset/`` subfolder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from embedgenre.catalog.items import Item
from embedgenre.catalog.text import (
    clean_id,
    clean_item,
    normalise_imdb_id,
    parse_year,
    split_genres,
)

logger = logging.getLogger(__name__)


def _mmimdb_plot(value) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    # IMDb plot entries may end with "::author"; keep the synopsis only.
    body, sep, author = text.rpartition("::")
    if sep and body.strip() and len(author) < 80 and "\n" not in author:
        text = body.strip()
    return text or None


def read_mmimdb(folder: Path) -> tuple[list[Item], list[str]]:
    """(items, problems) of the MM-IMDb ``<id>.json`` files in ``folder``."""
    problems: list[str] = []
    items: list[Item] = []
    seen: set[str] = set()
    for f in sorted(folder.glob("*.json")):
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append(f"{f.name}: not valid UTF-8 JSON ({e}); skipped")
            continue
        except RecursionError:
            problems.append(
                f"{f.name}: JSON nested too deeply to be a movie record (lists or objects inside "
                "each other hundreds of levels down); skipped"
            )
            continue
        if not isinstance(obj, dict) or not {"genres", "plot", "title"} & obj.keys():
            logger.debug("skipping %s: not a movie record", f.name)
            continue
        item_id = normalise_imdb_id(f.stem) or clean_id(f.stem)
        if item_id in seen:
            problems.append(f"{f.name}: duplicate id {item_id}; kept the first")
            continue
        seen.add(item_id)
        raw_genres = obj.get("genres")
        if isinstance(raw_genres, list):
            raw_genres = [g for g in raw_genres if isinstance(g, str)]
        genres = split_genres(raw_genres if isinstance(raw_genres, (str, list)) else None)
        if not genres:
            problems.append(f"{f.name}: {item_id} has no genres; kept with none")
        year, bad_year = parse_year(obj.get("year"))
        if bad_year:
            problems.append(
                f"{f.name}: {item_id} has year {obj.get('year')!r}, not a year; set to None"
            )
        title = obj.get("title")
        title = title.strip() or None if isinstance(title, str) else None
        poster = next(
            (
                f.with_suffix(ext)
                for ext in (".jpeg", ".jpg", ".png")
                if f.with_suffix(ext).is_file()
            ),
            f.with_suffix(".jpeg"),
        )
        item = Item(item_id, title, year, genres, _mmimdb_plot(obj.get("plot")), poster.absolute())
        item = clean_item(item, f.name, problems)
        if item is not None:
            items.append(item)
    return items, problems
