"""Writing small catalogs for tests (movies.csv with the shared data's columns)."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

FIELDS = ["imdb_id", "title", "year", "genres", "plot", "poster"]


def make_catalog(root: Path, rows: list[dict]) -> Path:
    """Write movies.csv in ``root``; ``rows`` use FIELDS keys."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    return root


def copy_fixture(fixture_dir: Path, root: Path, n: int = 12) -> list[dict]:
    """The first ``n`` movies of the shared fixture as a catalog in ``root`` (posters copied, so
    a test may change them); returns their rows."""
    import shutil

    with open(fixture_dir / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    (root / "posters").mkdir(parents=True)
    for r in rows:
        shutil.copy(fixture_dir / r["poster"], root / r["poster"])
    make_catalog(root, rows)
    return rows


def png_header_only(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels (grey, or RGB with ``colour_type=2``)
    but carries almost no data: a decompression bomb that only a header check stops cheaply."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
