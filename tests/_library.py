"""A Kodi / Jellyfin media library made from the shared fixture, for the library tests.

Three naming styles (``movie.nfo`` + ``poster.jpg``; ``<video>.nfo`` + ``<video>-poster.jpg``;
a flat folder of ``<video>.nfo`` / ``<video>-poster.png``), with comments, elements embedgenre
does not know, CRLF, BOM and ISO-8859-1 variants, movies without genres, and movies without an NFO.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

N_LABELLED = 10  # movies whose NFO has genres (the fewest a head trains on)
N_UNLABELLED = 5  # NFO without <genre>
N_NO_NFO = 3  # a video and a poster only


def fixture_rows(fixture_dir: Path, n: int) -> list[dict]:
    with open(fixture_dir / "movies.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["year"] and r["plot"]]
    return rows[:n]


def nfo_text(row: dict, style: int, with_genres: bool) -> str:
    """A movie NFO as Kodi (style 0), Jellyfin (1) or tinyMediaManager (2) would write it."""
    ind = ["    ", "  ", "\t"][style]
    title = escape(row["title"])
    lines = [
        ['<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>',
         "<!-- created on 2024-01-01 - by kodi -->"],
        ['<?xml version="1.0" encoding="utf-8" standalone="yes"?>'],
        ['<?xml version="1.0" encoding="UTF-8"?>', "<!--tinyMediaManager meta data-->"],
    ][style]  # fmt: skip
    lines.append("<movie>")
    lines.append(f"{ind}<title>{title}</title>")
    lines.append(f"{ind}<originaltitle>{title}</originaltitle>")
    lines.append(f'{ind}<ratings>\n{ind}{ind}<rating name="imdb" max="10" default="true">')
    lines.append(f"{ind}{ind}{ind}<value>7.1</value>\n{ind}{ind}</rating>\n{ind}</ratings>")
    lines.append(f"{ind}<year>{row['year']}</year>")
    tag = "plot" if style != 2 else "outline"
    lines.append(f"{ind}<{tag}>{escape(row['plot'])}</{tag}>")
    lines.append(f'{ind}<uniqueid type="imdb" default="true">{row["imdb_id"]}</uniqueid>')
    lines.append(f"{ind}<!-- the genres -->")
    if with_genres:
        lines += [f"{ind}<genre>{escape(g)}</genre>" for g in row["genres"].split("|")]
    lines.append(f"{ind}<studio>Pinewood &amp; Co</studio>")
    lines.append(f"{ind}<fileinfo><streamdetails><video><codec>h264</codec></video>")
    lines.append(f"{ind}</streamdetails></fileinfo>")
    lines.append(f"{ind}<somethingnew attr='x > y'>kept</somethingnew>")
    lines.append("</movie>")
    return "\n".join(lines) + "\n"


def make_library(fixture_dir: Path, root: Path) -> dict[str, dict]:
    """Write the library under ``root``; returns {imdb id: facts about the movie}."""
    rows = fixture_rows(fixture_dir, N_LABELLED + N_UNLABELLED + N_NO_NFO)
    movies: dict[str, dict] = {}
    for i, row in enumerate(rows):
        name = f"{row['title'].replace('/', '-').replace(':', ' -')} ({row['year']})"
        labelled = i < N_LABELLED
        has_nfo = i < N_LABELLED + N_UNLABELLED
        style = i % 3
        if style == 2:  # flat folder
            folder = root / "Flat"
            stem = name
            poster = folder / f"{stem}-poster.png"
            nfo = folder / f"{stem}.nfo"
        else:
            folder = root / ("Movies" if i % 2 else "More/Nested") / name
            stem = name
            poster = folder / ("poster.jpg" if style == 0 else f"{stem}-poster.jpg")
            if i == 4:
                poster = folder / "folder.jpg"
            nfo = folder / ("movie.nfo" if style == 0 else f"{stem}.nfo")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really a video")
        shutil.copy(fixture_dir / row["poster"], poster)
        facts = {"row": row, "nfo": nfo if has_nfo else None, "labelled": labelled}
        if has_nfo:
            text = nfo_text(row, style, labelled)
            if i % 4 == 1:
                text = text.replace("\n", "\r\n")
            data = text.encode("utf-8")
            if i % 5 == 2:
                data = b"\xef\xbb\xbf" + data
            if i == 7:  # ISO-8859-1, declared, with a character UTF-8 would spell differently
                text = re.sub('encoding="utf-8"', 'encoding="ISO-8859-1"', text, flags=re.I)
                text = text.replace("<title>", "<title>Caf\u00e9 ", 1)
                data = text.encode("latin-1", errors="xmlcharrefreplace")
            nfo.write_bytes(data)
            facts["title"] = ("Caf\u00e9 " if i == 7 else "") + row["title"]
        movies[row["imdb_id"]] = facts
    # items a library holds that are not movies
    (root / "Movies" / "extras").mkdir(parents=True, exist_ok=True)
    (root / "Movies" / "extras" / "trailer.mkv").write_bytes(b"x")
    (root / "Shows" / "Some Show").mkdir(parents=True)
    (root / "Shows" / "Some Show" / "tvshow.nfo").write_text("<tvshow><title>S</title></tvshow>")
    return movies


def snapshot(root: Path) -> dict[str, str]:
    """{path inside root: sha256} of every file, the tool's own state folder excluded."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".embedgenre" not in p.relative_to(root).parts
    }


def inserted_only(before: bytes, after: bytes) -> bytes:
    """The bytes ``after`` holds beyond ``before``, asserting they form one insertion (every
    original byte kept, in order, around it)."""
    p = 0
    while p < len(before) and before[p] == after[p]:
        p += 1
    s = 0
    while s < len(before) - p and before[-1 - s] == after[-1 - s]:
        s += 1
    assert p + s == len(before), "bytes other than one insertion changed"
    return after[p : len(after) - s]
