"""The one row reader: a catalog CSV file read into checked rows, for every CSV layout
(``movies.csv``, Kaggle's ``MovieGenre.csv``) and for ``posters download``.

:func:`open_table` reads and decodes the file and matches its columns to the fields;
:func:`read_rows` turns its rows into :class:`Row` s: the id cleaned and normalised, repeats and
rows without an id skipped, a row that an unclosed quote made swallow the rows after it skipped
with a :class:`CatalogWarning`, extra fields and bad years noted. Every skip or change is a
problem message naming the file and line.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedgenre.catalog.items import CatalogWarning
from embedgenre.catalog.text import (
    brief,
    clean_id,
    column_key,
    normalise_imdb_id,
    parse_year,
    shown,
    split_genres,
    split_title_year,
    unusable_id,
)
from embedgenre.errors import CatalogError

FIELDS = ("id", "title", "year", "genres", "plot", "poster")
REQUIRED_FIELDS = ("id", "genres")
# A CSV field longer than this (a pasted book, a corrupt file) is cut to this many characters.
MAX_FIELD_CHARS = 100_000
# The csv module's own limit on a field, raised so that over-long fields can be cut, not refused.
_CSV_FIELD_LIMIT = 2**31 - 1
_FOLDED_IMDB_RE = re.compile(r"^tt\d{7,8}$", re.IGNORECASE)

# Column names tried for each field when no mapping is given; compared after column_key().
_DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("imdb_id", "id", "movie_id", "tconst"),
    "title": ("title", "name", "primary_title"),
    "year": ("year", "release_year", "start_year"),
    "genres": ("genres", "genre"),
    "plot": ("plot", "overview", "synopsis", "description"),
    "poster": ("poster", "poster_path", "image"),
}


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
                f"Fields: {', '.join(FIELDS)}.",
                param="columns",
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


def _decode(raw: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as e:
            raise CatalogError(
                f"Cannot decode {path} as {encoding!r} ({e}).",
                "Fix: name the file's real encoding (e.g. latin-1), or leave it unset to detect "
                "UTF-8/cp1252.",
                param="encoding",
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
        message = CatalogWarning(
            f"{path} is not valid UTF-8 (first bad byte at offset {first_bad}); read it as "
            f"{fallback}.",
            "Fix: re-save it as UTF-8, or name its encoding to silence this warning.",
            param="encoding",
        )
        warnings.warn(message, stacklevel=5)
        return text, fallback
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def match_columns(
    header: Sequence[str], columns: Mapping[str, str] | None, source: Path
) -> dict[str, str | None]:
    """field -> column name in ``header`` (or None when absent and optional)."""
    by_key = {}
    for h in header:
        by_key.setdefault(column_key(h), h)
    found = ", ".join(header) or "(none)"
    mapping: dict[str, str | None] = {}
    for fld in FIELDS:
        wanted = (columns or {}).get(fld)
        if wanted is not None:
            col = wanted if wanted in header else by_key.get(column_key(wanted))
            if col is None:
                raise CatalogError(
                    f"{source}: column {wanted!r} (mapped to field {fld!r}) is not in the file; "
                    f"columns found: {found}.",
                    f"Fix: map {fld} to one of these columns ({fld}=COLUMN).",
                    param="columns",
                )
        else:
            col = next(
                (by_key[column_key(c)] for c in _DEFAULT_COLUMNS[fld] if column_key(c) in by_key),
                None,
            )
        if col is None and fld in REQUIRED_FIELDS:
            tried = ", ".join(_DEFAULT_COLUMNS[fld])
            raise CatalogError(
                f"{source}: no {fld!r} column (looked for {tried}); columns found: {found}.",
                f"Fix: rename the column, or map the field to it: {fld}=COLUMN.",
                param="columns",
            )
        mapping[fld] = col
    return mapping


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


@dataclass
class Table:
    """A catalog CSV file as read: its rows (line number, row dict) and which column holds each
    field (None for an optional field the file lacks)."""

    source: Path
    header: list[str]
    rows: list[tuple[int, dict]]
    columns: dict[str, str | None]
    encoding: str
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """One checked row: the cleaned, normalised id and the fields' cells as read.

    ``poster`` is the poster cell as written (a path or a URL; ``""`` when empty); ``where``
    names the file and line for problem messages.
    """

    line: int
    where: str
    id: str
    title: str | None
    year: int | None
    genres: tuple[str, ...]
    plot: str | None
    poster: str


def open_table(
    source: str | Path, columns: Mapping[str, str] | None = None, encoding: str | None = None
) -> Table:
    """Read ``source`` (see :func:`read_csv_table`) and match its columns to the fields
    (``columns`` maps a field to another column name); a file not UTF-8 is noted in
    ``Table.problems``. Raises :class:`CatalogError` for a file with no header row or without
    an id or genres column."""
    source = Path(source)
    header, rows, used = read_csv_table(source, encoding)
    if not header:
        raise CatalogError(
            f"Catalog {source} is empty (no header row). Fix: the first line must name the "
            "columns, e.g. imdb_id,title,year,genres,plot,poster."
        )
    problems = [f"{source.name}: not UTF-8; decoded as {used}"] if used != "utf-8" else []
    return Table(source, header, rows, match_columns(header, columns, source), used, problems)


def read_rows(
    table: Table, *, imdb_ids: bool, title_years: bool, genre_sep: str, problems: list[str]
) -> Iterator[Row]:
    """The table's rows worth reading, in file order; each row skipped or changed adds a message
    to ``problems`` (before the row is yielded, so a caller's own notes follow in line order).

    ``imdb_ids``: the ids are IMDb ids, so ``114709`` becomes ``tt0114709`` (an id starting
    with ``tt`` is normalised either way). ``title_years``: a year in brackets at the end of a
    title is split off (``"Toy Story (1995)"``); otherwise only when the file has no year column.
    Of repeated ids the first row is kept.
    """
    cols = table.columns
    name = table.source.name
    id_column, year_column = cols["id"], cols["year"]
    first_line: dict[str, int] = {}
    for line, row in table.rows:
        where = f"{name} line {line}"
        folded = _folded_rows(row, line, table.source, id_column)
        if folded:
            problems.append(folded)
            warnings.warn(folded, CatalogWarning, stacklevel=4)
            continue
        if None in row:
            problems.append(f"{where}: more fields than the header has; extra fields ignored")
        item_id = _row_id(row, cols, where, imdb_ids, problems)
        if item_id is None:
            continue
        if item_id in first_line:
            problems.append(
                f"{where}: duplicate id {brief(item_id)} (first at line {first_line[item_id]}); "
                "kept the first"
            )
            continue
        first_line[item_id] = line
        title = _cell(row, cols, "title") or None
        year_cell = _cell(row, cols, "year")
        year, bad_year = parse_year(year_cell)
        if bad_year:
            problems.append(f"{where}: {item_id} has year {year_cell!r}, not a year; set to None")
        if title and (title_years or (year_column is None and year is None)):
            title, title_year = split_title_year(title)
            year = year if year is not None else title_year
        genres = split_genres(_cell(row, cols, "genres"), genre_sep)
        plot = _cell(row, cols, "plot") or None
        yield Row(
            line, where, item_id, title or None, year, genres, plot, _cell(row, cols, "poster")
        )


def _cell(row: dict, cols: Mapping[str, str | None], fld: str) -> str:
    col = cols[fld]
    value = row.get(col) if col else None
    return value.strip() if isinstance(value, str) else ""


def _row_id(
    row: dict, cols: Mapping[str, str | None], where: str, imdb_ids: bool, problems: list[str]
) -> str | None:
    """The row's id, cleaned and normalised; None (with a problem noted) when it has none."""
    raw_id = _cell(row, cols, "id")
    cleaned = clean_id(raw_id)
    if cleaned != raw_id and cleaned:
        problems.append(
            f"{where}: id {shown(raw_id)} holds control characters; read as {shown(cleaned)}"
        )
    if not cleaned:
        if any((v or "").strip() for k, v in row.items() if k is not None and isinstance(v, str)):
            problems.append(f"{where}: no id; row skipped")
        return None
    if unusable_id(cleaned):
        problems.append(f"{where}: id {cleaned!r} names no movie; row skipped")
        return None
    if imdb_ids or cleaned.lower().startswith("tt"):
        return normalise_imdb_id(cleaned) or cleaned
    return cleaned
