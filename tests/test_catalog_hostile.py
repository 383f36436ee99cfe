"""Catalog reading of hostile CSV files: huge fields, control characters in ids, path-like ids."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from embedgenre.catalog import (
    MAX_FIELD_CHARS,
    POSTER_STEM_CHARS,
    CatalogWarning,
    clean_id,
    poster_stem,
    read_catalog,
)

HEADER = "imdb_id,title,year,genres,plot,poster\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_huge_plot_is_cut_with_one_warning_not_refused(tmp_path):
    huge = "word " * 1_000_000  # 5 MB in one field
    write(
        tmp_path / "movies.csv",
        HEADER
        + "tt0000001,One,2001,Drama,short plot,\n"
        + f'tt0000002,Two,2002,Comedy,"{huge}",\n'
        + f'tt0000003,Three,2003,Horror,"{huge}",\n',
    )
    with pytest.warns(CatalogWarning, match=r"line 3, column 'plot'.*5,000,000 characters") as rec:
        cat = read_catalog(tmp_path)
    assert len([w for w in rec if issubclass(w.category, CatalogWarning)]) == 1
    assert "1 more field(s)" in str(rec[0].message)
    assert cat.ids == ["tt0000001", "tt0000002", "tt0000003"]
    assert len(cat.items[1].plot) <= MAX_FIELD_CHARS
    assert cat.items[1].plot.startswith("word word")
    assert cat.items[0].plot == "short plot"
    # the process-wide csv limit was raised, not left at its 131,072 default
    assert csv.field_size_limit() > 5_000_000


def test_field_just_under_the_cut_is_kept_whole(tmp_path):
    plot = "x" * MAX_FIELD_CHARS
    write(tmp_path / "movies.csv", HEADER + f"tt0000001,One,2001,Drama,{plot},\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CatalogWarning)
        cat = read_catalog(tmp_path)
    assert cat.items[0].plot == plot


def test_control_characters_are_stripped_from_ids(tmp_path):
    write(
        tmp_path / "movies.csv",
        HEADER
        + "tt00\x0000001,One,2001,Drama,,\n"
        + "movie\u200b-7\x07,Seven,2007,Comedy,,\n"
        + "\x00\x00,Nothing,2008,Comedy,,\n",
    )
    cat = read_catalog(tmp_path)
    assert cat.ids == ["tt0000001", "movie-7"]
    assert all("\x00" not in i for i in cat.ids)
    assert any("line 2: id 'tt00\\x0000001' holds control characters" in p for p in cat.problems)
    assert any("line 4: no id; row skipped" in p for p in cat.problems)


@pytest.mark.parametrize("bad", [".", ".."])
def test_dot_ids_are_refused_as_listed_problems(tmp_path, bad):
    write(
        tmp_path / "movies.csv", HEADER + f"{bad},Dots,2001,Drama,,\ntt0000002,Two,2002,Drama,,\n"
    )
    cat = read_catalog(tmp_path)
    assert cat.ids == ["tt0000002"]
    assert f"movies.csv line 2: id {bad!r} names no movie; row skipped" in cat.problems


def test_long_duplicate_id_message_is_bounded(tmp_path):
    long_id = "m" * 5000
    write(tmp_path / "movies.csv", HEADER + f"{long_id},A,,Drama,,\n{long_id},B,,Drama,,\n")
    cat = read_catalog(tmp_path)
    assert cat.ids == [long_id]
    (problem,) = cat.problems
    assert "duplicate id" in problem and len(problem) < 200


def test_clean_id():
    assert clean_id(" tt1\x00\t\n ") == "tt1"
    assert clean_id("a\u202eb") == "ab"  # a direction override is invisible: removed
    assert clean_id("\x00") == ""


@pytest.mark.parametrize(
    "item_id",
    ["/etc/passwd", "../../x", "a/b", "..", ".", ".hidden", "CON", "nul.txt", "Ab", "x" * 5000,
     "a\x00b", "tt 1", "é", ""],
)  # fmt: skip
def test_poster_stem_is_never_a_path(item_id):
    stem = poster_stem(item_id)
    assert stem and stem not in (".", "..") and not stem.startswith(".")
    assert "/" not in stem and "\\" not in stem and "\x00" not in stem
    assert len(stem) <= POSTER_STEM_CHARS + 17
    assert Path(stem).name == stem
    assert all(c.isascii() and (c.isalnum() or c in "._-+") for c in stem)
    assert stem != item_id  # each of these needed changing


def test_poster_stem_keeps_plain_ids_and_never_collides():
    assert poster_stem("tt0114709") == "tt0114709"
    assert poster_stem("movie-7_b.v2") == "movie-7_b.v2"
    ids = ["a/b", "a_b", "a:b", "a b", "A_b", "a_B", "a_b+", "x" * 200, "x" * 201, "AB", "ab"]
    stems = [poster_stem(i) for i in ids]
    assert len({s.lower() for s in stems}) == len(ids)  # distinct even ignoring case
    assert poster_stem("a/b") == poster_stem("a/b")  # stable


def test_kaggle_ids_never_point_outside_the_posters_folder(tmp_path):
    write(
        tmp_path / "MovieGenre.csv",
        "imdbId,Title,Genre,Poster\n"
        "../../etc/passwd,Escape (2001),Drama,http://127.0.0.1:9/x.jpg\n"
        "114709,Toy Story (1995),Comedy,http://127.0.0.1:9/y.jpg\n",
    )
    cat = read_catalog(tmp_path)
    posters = tmp_path.absolute() / "posters"
    for it in cat.items:
        assert it.poster.parent == posters
    assert cat.items[1].poster == posters / "tt0114709.jpg"
