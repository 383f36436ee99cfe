"""Row cleaning shared by every layout: ids, genre names, years and text made safe and canonical.

:func:`clean_item` is the one gate every layout's rows pass through before they become a
catalog's items; the helpers beside it normalise one cell each (also used by
:mod:`embedgenre.download` and the media-library side). :func:`poster_stem` is the only way a
poster file name is made from an id, so an id is never a path.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

from embedgenre.catalog.items import Item

# Readable characters kept from an id in a poster file name, before the hash.
POSTER_STEM_CHARS = 80
# A genre name longer than this is no genre (a pasted text, a broken file) and is left out.
MAX_GENRE_CHARS = 64

# IMDb's genre names; other spellings ("sci fi", "FILM NOIR", "science fiction") map onto them.
IMDB_GENRES = (
    "Action", "Adult", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary",
    "Drama", "Family", "Fantasy", "Film-Noir", "Game-Show", "History", "Horror", "Music",
    "Musical", "Mystery", "News", "Reality-TV", "Romance", "Sci-Fi", "Short", "Sport",
    "Talk-Show", "Thriller", "War", "Western",
)  # fmt: skip
_GENRE_ALIASES = {"sciencefiction": "Sci-Fi", "sports": "Sport", "biopic": "Biography"}

_YEAR_RE = re.compile(r"^(\d{4})(?:\.0+|-\d{1,2}(?:-\d{1,2})?)?$")
_TITLE_YEAR_RE = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")
_IMDB_ID_RE = re.compile(r"^(?:tt)?(\d{1,8})$", re.IGNORECASE)
_PLAIN_STEM_RE = re.compile(rf"[a-z0-9_-][a-z0-9._-]{{0,{POSTER_STEM_CHARS - 1}}}")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {
    f"{d}{i}" for d in ("com", "lpt") for i in range(10)
}
# Control characters (C0 but tab, newline and carriage return; DEL; C1 but NEL), characters that
# change the direction of displayed text (marks, embeddings, overrides, isolates) and lone
# surrogates: removed from catalog text, since a terminal or a page would act on them.
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# Line and paragraph breaks: a space in one-line text (ids, titles, genres).
_BREAK_RE = re.compile("[\t\n\r\x85\u2028\u2029]+")

_NOT_KEY_RE = re.compile(r"[^a-z0-9]")
_CANONICAL_GENRES = {_NOT_KEY_RE.sub("", g.lower()): g for g in IMDB_GENRES}


def column_key(name: str) -> str:
    """A name compared without case, spaces or punctuation: ``"Sci fi"`` -> ``"scifi"``."""
    return _NOT_KEY_RE.sub("", name.lower())


def normalise_genre(name: str) -> str | None:
    """Canonical genre name: IMDb's spelling when known (``sci fi`` -> ``Sci-Fi``), else Title Case.

    Control and direction characters are removed and inner whitespace (line breaks included)
    collapsed to one space. Returns None for an empty name.
    """
    name = " ".join(clean_text(name).split())
    if not name:
        return None
    key = column_key(name)
    canonical = _CANONICAL_GENRES.get(key) or _GENRE_ALIASES.get(key)
    if canonical:
        return canonical
    return " ".join(w if w.isupper() and len(w) > 1 else w.capitalize() for w in name.split(" "))


def split_genres(value: str | Sequence[str] | None, sep: str = "|") -> tuple[str, ...]:
    """Split and normalise a genre cell (``"Action|sci-fi"``) or list; drops empties and repeats."""
    if value is None:
        return ()
    parts = value.split(sep) if isinstance(value, str) else [str(v) for v in value]
    out: list[str] = []
    for p in parts:
        g = normalise_genre(p)
        if g and g not in out:
            out.append(g)
    return tuple(out)


def normalise_imdb_id(value: str | int) -> str | None:
    """``114709``, ``"0114709"`` or ``"tt114709"`` -> ``"tt0114709"``; None if not an IMDb id."""
    m = _IMDB_ID_RE.match(str(value).strip())
    if not m:
        return None
    return "tt" + m.group(1).zfill(7)


def clean_text(value: str, *, multiline: bool = False) -> str:
    """``value`` without control characters (NUL, DEL, escape sequences' ESC, C1) and without
    characters that change the direction of displayed text (U+200E/F, U+202A-202E, U+2066-2069).

    One-line text (titles, genres): tabs and line breaks become spaces. ``multiline`` (plots): tabs
    and newlines are kept, ``\\r\\n`` and ``\\r`` become ``\\n``. Outer whitespace is stripped.
    """
    text = str(value)
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x85", "\n")
    else:
        text = _BREAK_RE.sub(" ", text)
    return _CONTROL_RE.sub("", text).strip()


def has_hidden_controls(value: str) -> bool:
    """True when ``value`` holds characters :func:`clean_text` removes (not tabs or newlines)."""
    return _CONTROL_RE.search(value) is not None


def clean_id(value: str) -> str:
    """An id cell without control or invisible format characters (NUL, tab, newline, zero-width and
    direction marks) and without outer spaces; ``""`` when nothing else is left."""
    value = str(value)
    if value.isascii() and value.isprintable():
        return value.strip()
    kept = "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    return kept.strip()


def unusable_id(item_id: str) -> bool:
    """True for ids that name no movie: ``"."`` and ``".."`` (path words, refused as ids)."""
    return item_id in (".", "..")


def poster_stem(item_id: str) -> str:
    """The poster file name (without extension) for ``item_id``; never a path.

    A short lower-case id of letters, digits, ``.``, ``_`` and ``-`` (not starting with ``.``) is
    its own name, e.g. ``tt0114709``. Any other id keeps up to ``POSTER_STEM_CHARS`` of those
    characters and gets ``+`` and a hash of the whole id, so that distinct ids never share a name,
    even on a case-insensitive file system; ``"."``, ``".."`` and hidden names cannot occur.
    """
    if _PLAIN_STEM_RE.fullmatch(item_id) and item_id.split(".")[0] not in _WINDOWS_RESERVED:
        return item_id
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).lstrip("._-")[:POSTER_STEM_CHARS]
    digest = hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable or 'id'}+{digest}"


def brief(text: str, limit: int = 80) -> str:
    """``text`` for messages, cut to ``limit`` characters with its length noted."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)"


def shown(value: str, limit: int = 60) -> str:
    """``repr`` of ``value`` for messages, cut to about ``limit`` characters."""
    text = repr(value)
    return (
        text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]} ({len(value):,} chars)"
    )


def split_title_year(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; titles without a year pass through."""
    m = _TITLE_YEAR_RE.match(title)
    if m and m.group(1):
        return m.group(1).strip(), int(m.group(2))
    return title.strip(), None


def parse_year(value: str | int | float | None) -> tuple[int | None, bool]:
    """Year from ``1995``, ``"1995"``, ``"1995.0"``, ``"1995-11-22"``: (year or None, was_bad).

    Empty is (None, False); anything else that is not a year in 1870..2100 is (None, True).
    """
    if value is None:
        return None, False
    text = str(value).strip()
    if not text:
        return None, False
    m = _YEAR_RE.match(text)
    if m and 1870 <= int(m.group(1)) <= 2100:
        return int(m.group(1)), False
    return None, True


def clean_item(item: Item, where: str, problems: list[str]) -> Item | None:
    """The one gate every layout's rows pass through before they become a catalog's items.

    Removes control and direction characters from the id, title, plot and genre names (see
    :func:`clean_text`), leaves out genre names longer than ``MAX_GENRE_CHARS`` and notes each
    change in ``problems`` (``where`` names the file and line). None when no id is left.
    """
    item_id = clean_id(item.id)
    if item_id != item.id:
        problems.append(
            f"{where}: id {shown(item.id)} holds control characters; read as {shown(item_id)}"
        )
    if not item_id or unusable_id(item_id):
        problems.append(f"{where}: id {shown(item.id)} names no movie; row skipped")
        return None
    changed = []
    title = clean_text(item.title) if item.title else None
    if item.title and has_hidden_controls(item.title):
        changed.append("title")
    plot = clean_text(item.plot, multiline=True) if item.plot else None
    if item.plot and has_hidden_controls(item.plot):
        changed.append("plot")
    genres: list[str] = []
    for g in item.genres:
        name = normalise_genre(g) if not g.isprintable() or "  " in g else g.strip()
        if not name:
            continue
        if name != g and has_hidden_controls(g):
            changed.append(f"genre {shown(name)}")
        if len(name) > MAX_GENRE_CHARS:
            problems.append(
                f"{where}: {brief(item_id)} has a genre name of {len(name):,} characters "
                f"({shown(name, 40)}), longer than the {MAX_GENRE_CHARS} a genre name may have; "
                "left out. Fix: split the genre cell with the right separator, or shorten the name"
            )
        elif name not in genres:
            genres.append(name)
    if changed:
        problems.append(
            f"{where}: {brief(item_id)}'s {', '.join(changed)} held control or text-direction "
            "characters; removed"
        )
    return Item(item_id, title or None, item.year, tuple(genres), plot or None, item.poster)
