"""Catalog reading and validation, the genre vocabulary, and multi-label splits.

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

import csv
import hashlib
import io
import json
import logging
import os
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedgenre.errors import CatalogError
from embedgenre.library.nfo import LibraryMovie, looks_like_library, name_ids, scan_library
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
FIELDS = ("id", "title", "year", "genres", "plot", "poster")
REQUIRED_FIELDS = ("id", "genres")
RARE_MODES = ("drop", "other")
OTHER_GENRE = "Other"
POSTER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# A CSV field longer than this (a pasted book, a corrupt file) is cut to this many characters.
MAX_FIELD_CHARS = 100_000
# The csv module's own limit on a field, raised so that over-long fields can be cut, not refused.
_CSV_FIELD_LIMIT = 2**31 - 1
# Readable characters kept from an id in a poster file name, before the hash.
POSTER_STEM_CHARS = 80
# A genre name longer than this is no genre (a pasted text, a broken file) and is left out.
MAX_GENRE_CHARS = 64

# Column names tried for each field when no mapping is given; compared after _column_key().
_DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("imdb_id", "id", "movie_id", "tconst"),
    "title": ("title", "name", "primary_title"),
    "year": ("year", "release_year", "start_year"),
    "genres": ("genres", "genre"),
    "plot": ("plot", "overview", "synopsis", "description"),
    "poster": ("poster", "poster_path", "image"),
}

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
_FOLDED_IMDB_RE = re.compile(r"^tt\d{7,8}$", re.IGNORECASE)
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


class CatalogWarning(UserWarning):
    """A catalog was read, but with a fallback the user may want to fix (e.g. not UTF-8)."""


@dataclass(frozen=True)
class Item:
    """One movie. ``poster`` is an absolute path (it may not exist); ``plot`` is None if empty."""

    id: str
    title: str | None = None
    year: int | None = None
    genres: tuple[str, ...] = ()
    plot: str | None = None
    poster: Path | None = None

    @property
    def plot_text(self) -> str | None:
        """The text embedded for the item's plot (see :func:`plot_text`)."""
        return plot_text(self.plot, self.title)


def plot_text(plot: str | None, title: str | None = None) -> str | None:
    """The text a plot embedding is made of: ``"Title. synopsis"``, or the synopsis alone.

    A title often carries genre words ("... of the Dead", "A Christmas ..."); on the shared
    posters adding it raised a linear plot head's micro-F1 by about 0.01 (0.613 -> 0.621, mean
    of three test splits), with mAP unchanged.
    Without a synopsis there is no plot text: a title alone is not embedded.
    """
    plot = plot.strip() if plot else ""
    if not plot:
        return None
    title = title.strip() if title else ""
    return f"{title}. {plot}" if title else plot


@dataclass
class Catalog:
    """Movies read from one source, with their genres by count desc, then name (an index keeps
    its own vocabulary order across runs: :mod:`embedgenre.vocabulary`)."""

    root: Path
    items: list[Item]
    genres: list[str]
    problems: list[str] = field(default_factory=list)
    layout: str = "csv"
    source: Path | None = None

    @classmethod
    def from_items(
        cls,
        items: Iterable[Item],
        root: str | Path = ".",
        problems: Sequence[str] = (),
        layout: str = "custom",
        source: str | Path | None = None,
    ) -> Catalog:
        """Build a catalog from items; the vocabulary is every genre that occurs."""
        items = list(items)
        return cls(
            root=Path(root).absolute(),
            items=items,
            genres=_vocabulary(items),
            problems=list(problems),
            layout=layout,
            source=Path(source) if source is not None else None,
        )

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    @property
    def ids(self) -> list[str]:
        return [it.id for it in self.items]

    def genre_counts(self) -> dict[str, int]:
        """Number of items per genre, in vocabulary order."""
        counts = Counter(g for it in self.items for g in it.genres)
        return {g: counts[g] for g in self.genres}

    def label_matrix(self) -> np.ndarray:
        """Multi-hot labels, uint8 (n_items, n_genres); columns follow ``self.genres``."""
        col = {g: j for j, g in enumerate(self.genres)}
        Y = np.zeros((len(self.items), len(self.genres)), dtype=np.uint8)
        for i, it in enumerate(self.items):
            for g in it.genres:
                j = col.get(g)
                if j is not None:
                    Y[i, j] = 1
        return Y

    def describe(self) -> dict:
        """A JSON-able summary (for manifests and ``--json`` output)."""
        return {
            "source": str(self.source) if self.source else None,
            "layout": self.layout,
            "n_items": len(self.items),
            "n_with_plot": sum(it.plot is not None for it in self.items),
            "n_with_poster": sum(it.poster is not None for it in self.items),
            "genres": self.genre_counts(),
            "problems": list(self.problems),
        }


# ---------------------------------------------------------------------------------------------
# Normalisation helpers (also used by embedgenre.download)


def normalise_genre(name: str) -> str | None:
    """Canonical genre name: IMDb's spelling when known (``sci fi`` -> ``Sci-Fi``), else Title Case.

    Control and direction characters are removed and inner whitespace (line breaks included)
    collapsed to one space. Returns None for an empty name.
    """
    name = " ".join(clean_text(name).split())
    if not name:
        return None
    key = _column_key(name)
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


def parse_columns(spec: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, str] | None:
    """CLI helper: ``"id=movie_id,genres=tags"`` (or a list of ``k=v``) -> ``{"id": "movie_id", ...}``."""
    if spec is None or isinstance(spec, Mapping):
        return dict(spec) if spec is not None else None
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    out: dict[str, str] = {}
    for part in parts:
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise CatalogError(
                f"Bad column mapping {part!r}: expected FIELD=COLUMN, e.g. 'genres=tags'. "
                f"Fields: {', '.join(FIELDS)}."
            )
        out[key.strip()] = value.strip()
    return out or None


def read_csv_table(
    path: str | Path, encoding: str | None = None
) -> tuple[list[str], list[tuple[int, dict]], str]:
    """Read a CSV file into (header, [(line number, row dict)], encoding used).

    UTF-8 (with or without BOM) is expected; other bytes are decoded as cp1252, then latin-1, with a
    :class:`CatalogWarning`. Pass ``encoding`` to choose one explicitly. A field longer than
    ``MAX_FIELD_CHARS`` is cut to that length, with one :class:`CatalogWarning` for the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CatalogError(f"Cannot read catalog file {path}: {e.strerror or e}.") from e
    text, used = _decode(raw, path, encoding)
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cut: list[tuple[int, str, int]] = []  # (line, column, original length)
    try:
        header = [_cut_field(h, 1, "(header)", cut).strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = []
        for row in reader:
            for key, value in row.items():
                if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                    row[key] = _cut_field(value, reader.line_num, key, cut)
            rows.append((reader.line_num, row))
    except csv.Error as e:
        raise CatalogError(
            f"{path} is not a readable CSV file (line {reader.line_num}: {e}). "
            "Fix: save it as comma-separated values with a header row."
        ) from e
    if cut:
        line, column, length = cut[0]
        more = f" ({len(cut) - 1} more field(s) cut the same way)" if len(cut) > 1 else ""
        where = (
            "the header" if column == "(header)" else f"line {line}, column {shown(str(column))}"
        )
        message = (
            f"{path.name} {where}: a field of {length:,} characters was cut to the first "
            f"{MAX_FIELD_CHARS:,}{more}. Fix: shorten the field, or check that the file's quotes "
            "are balanced."
        )
        warnings.warn(message, CatalogWarning, stacklevel=2)
    return header, rows, used


def _cut_field(value: str, line: int, column: str, cut: list[tuple[int, str, int]]) -> str:
    if len(value) <= MAX_FIELD_CHARS:
        return value
    cut.append((line, column, len(value)))
    return value[:MAX_FIELD_CHARS]


# ---------------------------------------------------------------------------------------------
# read_catalog


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

    ``layout``: ``"auto"`` (detect), ``"csv"``, ``"kaggle"`` or ``"mmimdb"`` (see the module doc).
    ``columns`` maps fields (id, title, year, genres, plot, poster) to CSV column names.
    ``top_genres=N`` keeps the N most frequent genres, ``min_genre_count=M`` keeps genres with at
    least M items; the others are dropped from items' genres (``rare="drop"``) or replaced by
    ``"Other"`` (``rare="other"``). Items are never dropped for their genres.
    ``genre_sep`` splits a genre cell; ``encoding`` forces a CSV encoding (default: UTF-8, falling
    back to cp1252/latin-1 with a warning).
    """
    layout = LAYOUT_ALIASES.get(layout, layout)
    if layout not in LAYOUTS:
        raise CatalogError(
            f"Unknown catalog layout {layout!r}; choose one of {', '.join(LAYOUTS)}."
        )
    if rare not in RARE_MODES:
        raise CatalogError(f"Unknown rare={rare!r}; choose 'drop' (remove rare genres) or 'other'.")
    for name, value in (("top_genres", top_genres), ("min_genre_count", min_genre_count)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise CatalogError(f"{name} must be a positive integer or None, got {value!r}.")
    if not genre_sep:
        raise CatalogError("genre_sep must be a non-empty string such as '|' or ','.")
    if columns:
        unknown = sorted(set(columns) - set(FIELDS))
        if unknown:
            raise CatalogError(
                f"Unknown field(s) in columns: {', '.join(unknown)}; the fields are {', '.join(FIELDS)} "
                "(map each to a column name, e.g. columns={'genres': 'tags'})."
            )

    path = Path(path)
    if not path.exists():
        raise CatalogError(
            f"Catalog {path} does not exist. Fix: pass a folder holding movies.csv (or "
            "MovieGenre.csv, or MM-IMDb .json files), or a CSV file."
        )
    layout, source = _find_source(path, layout)
    if layout == "mmimdb":
        items, problems = _read_mmimdb(source)
        root = source.absolute()
    elif layout == "library":
        movies, problems = read_library(source)
        items, root = [item for _, item in movies], source.absolute()
    else:
        items, problems, layout = _read_csv_layout(source, layout, columns, genre_sep, encoding)
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
        genres=_vocabulary(items),
        problems=problems,
        layout=layout,
        source=source.absolute(),
    )


# ---------------------------------------------------------------------------------------------
# internals


_CANONICAL_GENRES = {re.sub(r"[^a-z0-9]", "", g.lower()): g for g in IMDB_GENRES}


def _column_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _vocabulary(items: Sequence[Item]) -> list[str]:
    return by_frequency(it.genres for it in items)


def _decode(raw: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as e:
            raise CatalogError(
                f"Cannot decode {path} as {encoding!r} ({e}). Fix: pass the file's real encoding "
                "(e.g. encoding='latin-1'), or leave it unset to detect UTF-8/cp1252."
            ) from e
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as e:
        first_bad = e.start
    for fallback in ("cp1252", "latin-1"):
        try:
            text = raw.decode(fallback)
        except UnicodeDecodeError:
            continue
        message = (
            f"{path} is not valid UTF-8 (first bad byte at offset {first_bad}); read it as "
            f"{fallback}. Fix: re-save it as UTF-8, or name its encoding (encoding= or "
            "--encoding) to silence this warning."
        )
        warnings.warn(message, CatalogWarning, stacklevel=5)
        return text, fallback
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


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
    for name in ("movies.csv", "MovieGenre.csv"):
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


def _is_kaggle_header(header: Sequence[str]) -> bool:
    keys = {_column_key(h) for h in header}
    return "imdbid" in keys and "genre" in keys and "genres" not in keys


def _match_columns(
    header: Sequence[str], columns: Mapping[str, str] | None, source: Path
) -> dict[str, str | None]:
    """field -> column name in ``header`` (or None when absent and optional)."""
    by_key = {}
    for h in header:
        by_key.setdefault(_column_key(h), h)
    found = ", ".join(header) or "(none)"
    mapping: dict[str, str | None] = {}
    for fld in FIELDS:
        wanted = (columns or {}).get(fld)
        if wanted is not None:
            col = wanted if wanted in header else by_key.get(_column_key(wanted))
            if col is None:
                raise CatalogError(
                    f"{source}: column {wanted!r} (mapped to field {fld!r}) is not in the file; "
                    f"columns found: {found}. Fix: correct the mapping in columns=."
                )
        else:
            col = next(
                (by_key[_column_key(c)] for c in _DEFAULT_COLUMNS[fld] if _column_key(c) in by_key),
                None,
            )
        if col is None and fld in REQUIRED_FIELDS:
            tried = ", ".join(_DEFAULT_COLUMNS[fld])
            raise CatalogError(
                f"{source}: no {fld!r} column (looked for {tried}); columns found: {found}. "
                f"Fix: rename the column, or map it with columns={{'{fld}': '<column name>'}}."
            )
        mapping[fld] = col
    return mapping


def _is_file(entry: os.DirEntry) -> bool:
    """``entry.is_file()``, False for a link that cannot be followed (a loop, no permission)."""
    try:
        return entry.is_file()
    except OSError:
        return False


class _PosterFinder:
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


def _read_csv_layout(
    source: Path,
    layout: str,
    columns: Mapping[str, str] | None,
    genre_sep: str,
    encoding: str | None,
) -> tuple[list[Item], list[str], str]:
    header, rows, used = read_csv_table(source, encoding)
    if not header:
        raise CatalogError(
            f"Catalog {source} is empty (no header row). Fix: the first line must name the "
            "columns, e.g. imdb_id,title,year,genres,plot,poster."
        )
    if layout == "auto":
        layout = "kaggle" if _is_kaggle_header(header) and not columns else "csv"
    kaggle = layout == "kaggle"
    cols = _match_columns(header, columns, source)
    root = source.parent.absolute()
    finder = _PosterFinder(root)
    problems: list[str] = []
    if used != "utf-8":
        problems.append(f"{source.name}: not UTF-8; decoded as {used}")
    id_is_imdb = kaggle or "imdb" in _column_key(cols["id"] or "")

    def cell(row: dict, fld: str) -> str:
        col = cols[fld]
        value = row.get(col) if col else None
        return value.strip() if isinstance(value, str) else ""

    items: list[Item] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        where = f"{source.name} line {line}"
        folded = _folded_rows(row, line, source, cols["id"])
        if folded:
            problems.append(folded)
            warnings.warn(folded, CatalogWarning, stacklevel=3)
            continue
        if None in row:
            problems.append(f"{where}: more fields than the header has; extra fields ignored")
        raw_id = cell(row, "id")
        cleaned = clean_id(raw_id)
        if cleaned != raw_id and cleaned:
            problems.append(
                f"{where}: id {shown(raw_id)} holds control characters; read as {shown(cleaned)}"
            )
        raw_id = cleaned
        if not raw_id:
            if any(
                (v or "").strip() for k, v in row.items() if k is not None and isinstance(v, str)
            ):
                problems.append(f"{where}: no id; row skipped")
            continue
        if unusable_id(raw_id):
            problems.append(f"{where}: id {raw_id!r} names no movie; row skipped")
            continue
        item_id = raw_id
        if id_is_imdb or raw_id.lower().startswith("tt"):
            item_id = normalise_imdb_id(raw_id) or raw_id
        if item_id in first_line:
            problems.append(
                f"{where}: duplicate id {brief(item_id)} (first at line {first_line[item_id]}); "
                "kept the first"
            )
            continue
        first_line[item_id] = line

        title = cell(row, "title") or None
        year, bad_year = parse_year(cell(row, "year"))
        if bad_year:
            problems.append(
                f"{where}: {item_id} has year {cell(row, 'year')!r}, not a year; set to None"
            )
        if title and (kaggle or (cols["year"] is None and year is None)):
            title, title_year = split_title_year(title)
            year = year if year is not None else title_year
        genres = split_genres(cell(row, "genres"), genre_sep)
        if not genres:
            problems.append(f"{where}: {item_id} has no genres; kept with none")
        plot = cell(row, "plot") or None
        poster_cell = "" if kaggle else cell(row, "poster")
        if "\0" in poster_cell:
            problems.append(
                f"{where}: {brief(item_id)} has a poster path with a NUL character, which no "
                "file name holds; kept with no poster"
            )
            poster: Path | None = None
        elif poster_cell and not re.match(r"^[a-z][a-z0-9+.-]*://", poster_cell, re.IGNORECASE):
            poster = (root / poster_cell).absolute()
        else:
            poster = finder.find(item_id)
            if poster is None and kaggle:
                poster = root / "posters" / f"{poster_stem(item_id)}.jpg"
        item = clean_item(Item(item_id, title, year, genres, plot, poster), where, problems)
        if item is not None:
            items.append(item)

    _warn_if_separator_looks_wrong(items, rows, cols, genre_sep, source)
    return items, problems, layout


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


def _folded_rows(row: dict, line: int, source: Path, id_column: str | None) -> str | None:
    """A problem message when a quote left open in one row swallowed the rows after it, else
    None. Such a field spans lines, and a line inside it reads as a row of its own: a cell like
    an id first, and as many cells as the header has (or one fewer)."""
    if not any("\n" in v for v in row.values() if isinstance(v, str)):
        return None
    n_columns = sum(1 for k in row if k is not None)
    own_id = row.get(id_column) if id_column else None
    shape = _id_shape(own_id) if isinstance(own_id, str) and own_id.strip() else None
    for column, value in row.items():
        if column is None or not isinstance(value, str) or "\n" not in value:
            continue
        lines = value.replace("\r\n", "\n").split("\n")
        for offset, text in enumerate(lines[1:], start=1):
            cells = next(csv.reader([text]), [])
            if len(cells) < max(2, n_columns - 1):
                continue
            first = cells[0].strip()
            like_id = _FOLDED_IMDB_RE.match(first) or (
                shape and _id_shape(first) == shape and len(cells) >= n_columns
            )
            if not like_id:
                continue
            start = line - sum(v.count("\n") for v in row.values() if isinstance(v, str))
            folded = len(lines) - offset
            return (
                f"{source.name} line {start}: a quote opened in column {shown(column)} is never "
                f"closed, so the next {folded} line(s), from line {start + offset} "
                f"({shown(first, 30)}...), were read as part of this row instead of as rows; "
                f"the row was skipped. Fix: close the quote on line {start} (a quote inside a "
                'quoted field is written twice: "") and read the catalog again'
            )
    return None


def _id_shape(value: str) -> str | None:
    """``"tt0114709"`` -> ``"a0"``, ``"m-12"`` -> ``"a-0"``: an id's shape; None without digits."""
    value = value.strip()
    if not value or " " in value or len(value) > 40 or not any(c.isdigit() for c in value):
        return None
    return re.sub(r"[0-9]+", "0", re.sub(r"[^\W\d_]+", "a", value))


def _warn_if_separator_looks_wrong(items, rows, cols, genre_sep, source) -> None:
    if not items or any(len(it.genres) > 1 for it in items):
        return
    cells = [(row.get(cols["genres"]) or "") for _, row in rows]
    for other in (",", ";", "|", "/"):
        if other != genre_sep and sum(other in c for c in cells) > len(cells) // 2:
            message = (
                f"{source}: no movie has more than one genre, but most genre cells contain "
                f"{other!r}. Fix: pass genre_sep={other!r}."
            )
            warnings.warn(message, CatalogWarning, stacklevel=5)
            return


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


def _read_mmimdb(folder: Path) -> tuple[list[Item], list[str]]:
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
    from dataclasses import replace

    return replace(item, genres=genres)
