"""Adding ``<genre>`` elements to a movie NFO in the file's own style, every other byte kept.

The file is never re-serialised: the new elements are inserted as text after its last
``<genre>`` (or, when it has none, on a line of their own before ``</movie>``), indented like
their neighbours, with the file's line endings, in its encoding (BOM and XML declaration
honoured). Comments, element order, elements embedgenre does not know, and the rest of the
bytes are left exactly as they were; the edited file is parsed again and checked before it is
returned.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from embedgenre.library.nfo import NfoError, parse_nfo

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DECLARED_RE = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# Markup of a well-formed document: comments, CDATA, processing instructions, the doctype, and
# tags (group 1: "/" of an end tag, 2: the name, 3: "/" of an empty-element tag).
_MARKUP_RE = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!DOCTYPE(?:[^\[>]|\[.*?\])*>"
    r"""|<(/?)([^\s/>!?]+)(?:[^>"']|"[^"]*"|'[^']*')*?(/?)>""",
    re.S,
)
NEW_NFO_INDENT = "    "  # Kodi's own NFOs


@dataclass(frozen=True)
class Encoding:
    """How a file's text is stored: its byte-order mark (may be empty) and codec."""

    bom: bytes
    codec: str


def detect_encoding(raw: bytes) -> Encoding:
    """The BOM, else the XML declaration's encoding, else UTF-8 (UTF-16 without BOM sniffed)."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return Encoding(bom, codec)
    if raw.startswith(b"<\x00"):
        return Encoding(b"", "utf-16-le")
    if raw.startswith(b"\x00<"):
        return Encoding(b"", "utf-16-be")
    m = _DECLARED_RE.match(raw)
    if m:
        name = m.group(1).decode("ascii").lower()
        try:
            codec = codecs.lookup(name).name
        except LookupError as e:
            raise NfoError(f"it declares an unknown encoding {name!r}") from e
        # an ASCII-compatible start cannot be UTF-16 text; the declaration is wrong, not the bytes
        return Encoding(b"", "utf-8" if codec.startswith("utf-16") else codec)
    return Encoding(b"", "utf-8")


def add_genres(raw: bytes, genres: Sequence[str]) -> bytes:
    """``raw`` (a movie NFO) with ``<genre>`` elements for those of ``genres`` it lacks inserted;
    every original byte kept, in order. Raises :class:`~embedgenre.library.nfo.NfoError` if that cannot be
    done exactly (an undecodable file, no ``</movie>``)."""
    before = parse_nfo(raw)
    genres = [g for g in dict.fromkeys(genres) if g not in before.genres]
    if not genres:
        return raw
    enc = detect_encoding(raw)
    body = raw[len(enc.bom) :]
    try:
        text = body.decode(enc.codec)
    except UnicodeDecodeError as e:
        raise NfoError(f"it is not valid {enc.codec} ({e.reason} at byte {e.start})") from e
    if text.encode(enc.codec) != body:
        raise NfoError(f"its {enc.codec} text does not encode back to the same bytes")
    pos, snippet = _insertion(text, [f"<genre>{escape(g)}</genre>" for g in genres])
    cut = len(enc.bom) + len(text[:pos].encode(enc.codec))
    out = raw[:cut] + snippet.encode(enc.codec, errors="xmlcharrefreplace") + raw[cut:]
    after = parse_nfo(out)
    if list(after.genres) != list(before.genres) + genres:
        raise NfoError("its genres could not be added as separate <genre> elements")
    return out


def new_nfo(
    genres: Sequence[str], title: str | None = None, year: int | None = None, ids=None
) -> bytes:
    """A new minimal movie NFO (UTF-8, Kodi's layout): title, year, unique ids, genres."""
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>', "<movie>"]
    if title:
        lines.append(f"{NEW_NFO_INDENT}<title>{escape(title)}</title>")
    if year:
        lines.append(f"{NEW_NFO_INDENT}<year>{int(year)}</year>")
    for kind, value in (ids or {}).items():
        lines.append(f'{NEW_NFO_INDENT}<uniqueid type="{escape(kind)}">{escape(value)}</uniqueid>')
    lines += [f"{NEW_NFO_INDENT}<genre>{escape(g)}</genre>" for g in genres]
    lines.append("</movie>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _insertion(text: str, elements: list[str]) -> tuple[int, str]:
    """(character offset, text to insert there) for ``elements`` as children of the root."""
    eol = "\r\n" if "\r\n" in text else "\n" if "\n" in text else "\r" if "\r" in text else ""
    depth = 0
    root_close = None
    child_starts: list[int] = []
    genre_ends: list[tuple[int, int]] = []  # (start of the start tag, end of the element)
    genre_start = 0
    for m in _MARKUP_RE.finditer(text):
        name = m.group(2)
        if name is None:
            continue
        if m.group(1):  # end tag
            depth -= 1
            if depth == 1 and name == "genre":
                genre_ends.append((genre_start, m.end()))
            elif depth == 0:
                root_close = m.start()
                break
            continue
        if depth == 1:
            child_starts.append(m.start())
            genre_start = m.start()
            if m.group(3) and name == "genre":
                genre_ends.append((m.start(), m.end()))
        if not m.group(3):
            depth += 1
    if root_close is None:
        raise NfoError("it has no </movie> end tag to add genres before")
    if genre_ends:
        start, end = genre_ends[-1]
        indent = _indent(text, start)
        sep = eol + indent if eol and indent is not None else ""
        return end, "".join(sep + e for e in elements)
    indent = _indent(text, child_starts[-1]) if child_starts else NEW_NFO_INDENT
    line_start = text.rfind("\n", 0, root_close) + 1
    if eol and indent is not None and not text[line_start:root_close].strip():
        return line_start, "".join(indent + e + eol for e in elements)
    return root_close, "".join(elements)


def _indent(text: str, pos: int) -> str | None:
    """The white space before ``pos`` on its line, or None if other text precedes it there."""
    line_start = max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1
    lead = text[line_start:pos]
    return lead if not lead.strip() else None
