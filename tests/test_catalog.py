"""Catalog reading: the shared fixture, every layout, genre options, and each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedgenre.catalog import (
    Catalog,
    CatalogWarning,
    Item,
    normalise_genre,
    normalise_imdb_id,
    parse_columns,
    parse_year,
    read_catalog,
    split_title_year,
)
from embedgenre.errors import CatalogError, EmbedgenreError

HEADER = "imdb_id,title,year,genres,plot,poster\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --- the shared fixture -------------------------------------------------------------------------


def test_fixture_reads_every_row(fixture_dir):
    cat = read_catalog(fixture_dir)
    assert isinstance(cat, Catalog)
    assert cat.layout == "csv"
    assert len(cat) == 110 and len(set(cat.ids)) == 110
    assert cat.problems == []
    assert cat.root == fixture_dir.absolute()
    for it in cat.items:
        assert isinstance(it, Item)
        assert it.id.startswith("tt") and len(it.id) >= 9
        assert it.title and it.plot and len(it.genres) >= 1
        assert it.poster is not None and it.poster.is_absolute() and it.poster.is_file()
        assert it.year is None or 1870 <= it.year <= 2100


def test_fixture_vocabulary_and_labels(fixture_dir):
    cat = read_catalog(fixture_dir / "movies.csv")  # a CSV path works too
    counts = cat.genre_counts()
    assert list(counts) == cat.genres
    # sorted by count desc, then name
    assert cat.genres == sorted(cat.genres, key=lambda g: (-counts[g], g))
    Y = cat.label_matrix()
    assert Y.dtype == np.uint8 and Y.shape == (110, len(cat.genres))
    assert Y.sum(axis=0).tolist() == list(counts.values())
    assert (Y.sum(axis=1) >= 1).all()
    assert "Sci-Fi" in cat.genres


def test_fixture_top_genres_drop_and_other(fixture_dir):
    full = read_catalog(fixture_dir)
    top = read_catalog(fixture_dir, top_genres=5)
    assert top.genres == full.genres[:5]
    assert len(top) == 110  # items are never dropped for their genres
    other = read_catalog(fixture_dir, top_genres=5, rare="other")
    assert set(other.genres) == set(full.genres[:5]) | {"Other"}
    n_with_rare = sum(any(g not in full.genres[:5] for g in it.genres) for it in full.items)
    assert other.genre_counts()["Other"] == n_with_rare
    emptied = sum(not it.genres for it in top.items)
    if emptied:
        assert any("only rare genres" in p for p in top.problems)
