"""Catalog reading: the shared fixture, every layout, genre options, and each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def test_min_genre_count_and_combination(fixture_dir):
    full = read_catalog(fixture_dir)
    counts = full.genre_counts()
    cat = read_catalog(fixture_dir, min_genre_count=10)
    assert cat.genres == [g for g in full.genres if counts[g] >= 10]
    both = read_catalog(fixture_dir, top_genres=3, min_genre_count=20)
    assert both.genres == [g for g in full.genres[:3] if counts[g] >= 20]


# --- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("sci-fi", "Sci-Fi"), (" Sci Fi ", "Sci-Fi"), ("SCIENCE FICTION", "Sci-Fi"),
        ("film noir", "Film-Noir"), ("reality-tv", "Reality-TV"), ("drama", "Drama"),
        ("martial  arts", "Martial Arts"), ("TV movie", "TV Movie"), ("  ", None),
    ],
)  # fmt: skip
def test_normalise_genre(raw, expected):
    assert normalise_genre(raw) == expected


def test_small_parsers():
    assert normalise_imdb_id(114709) == "tt0114709"
    assert normalise_imdb_id("tt114709") == "tt0114709"
    assert normalise_imdb_id("tt10872600") == "tt10872600"
    assert normalise_imdb_id("movie-7") is None
    assert split_title_year("Toy Story (1995)") == ("Toy Story", 1995)
    assert split_title_year("(500) Days of Summer (2009)") == ("(500) Days of Summer", 2009)
    assert split_title_year("Heat") == ("Heat", None)
    assert parse_year("1995") == (1995, False)
    assert parse_year("1995.0") == (1995, False)
    assert parse_year("1995-11-22") == (1995, False)
    assert parse_year("") == (None, False)
    assert parse_year("nineteen") == (None, True)
    assert parse_year("3021") == (None, True)
    assert parse_columns("id=movie_id, genres=tags") == {"id": "movie_id", "genres": "tags"}
    assert parse_columns(["id=a", "plot=b"]) == {"id": "a", "plot": "b"}
    with pytest.raises(CatalogError, match="expected FIELD=COLUMN"):
        parse_columns("genres")


def test_from_items_builds_vocabulary(tmp_path):
    cat = Catalog.from_items(
        [Item("a", genres=("Drama",)), Item("b", genres=("Comedy", "Drama")), Item("c")], tmp_path
    )
    assert cat.genres == ["Drama", "Comedy"]
    assert cat.label_matrix().tolist() == [[1, 0], [1, 1], [0, 0]]


# --- layouts -------------------------------------------------------------------------------------


def test_csv_layout_details(tmp_path):
    write(tmp_path / "posters" / "tt0000001.jpg", "x")
    write(
        tmp_path / "movies.csv",
        HEADER
        + 'tt0000001,One,2001,"drama| sci fi |Drama","A plot, with comma",posters/tt0000001.jpg\n'
        + "tt2,,,Comedy,,\n"
        + "tt3,Three,2003,Horror,  ,/abs/p.jpg\n",
    )
    cat = read_catalog(tmp_path)
    a, b, c = cat.items
    assert a == Item(
        "tt0000001", "One", 2001, ("Drama", "Sci-Fi"), "A plot, with comma",
        (tmp_path / "posters" / "tt0000001.jpg").absolute(),
    )  # fmt: skip
    assert b.id == "tt0000002" and b.title is None and b.year is None and b.plot is None
    assert b.poster is None  # no poster cell and no posters/tt0000002.* file
    assert c.plot is None  # whitespace-only plot -> None
    assert c.poster == Path("/abs/p.jpg")


def test_csv_without_poster_column_finds_posters_by_id(tmp_path):
    write(tmp_path / "posters" / "m1.png", "x")
    write(tmp_path / "films.csv", "id,genres\nm1,Drama\nm2,Comedy\n")
    cat = read_catalog(tmp_path)  # the only CSV in the folder
    assert cat.items[0].poster == (tmp_path / "posters" / "m1.png").absolute()
    assert cat.items[1].poster is None
    assert cat.items[0].id == "m1"  # non-IMDb ids are kept as they are


def test_column_mapping_and_separator(tmp_path):
    csv_path = write(
        tmp_path / "other.csv",
        "movie_id,name,tags,story,img\n"
        "42,Answer,action;thriller,Deep thought,img/42.jpg\n"
        "43,Question,comedy,,img/43.jpg\n",
    )
    cat = read_catalog(
        csv_path,
        columns={
            "id": "movie_id",
            "title": "name",
            "genres": "tags",
            "plot": "story",
            "poster": "img",
        },
        genre_sep=";",
    )
    assert cat.layout == "csv"
    assert [it.id for it in cat.items] == ["42", "43"]
    assert cat.items[0].genres == ("Action", "Thriller")
    assert cat.items[0].plot == "Deep thought" and cat.items[1].plot is None
    assert cat.items[0].poster == (tmp_path / "img" / "42.jpg").absolute()
    with pytest.raises(CatalogError, match=r"column 'tag' \(mapped to field 'genres'\) is not in"):
        read_catalog(csv_path, columns={"id": "movie_id", "genres": "tag"})
    with pytest.raises(CatalogError, match="Unknown field.*colour") as e:
        read_catalog(csv_path, columns={"colour": "x"})
    assert e.value.param == "columns"


def test_wrong_separator_warns(tmp_path):
    csv_path = write(tmp_path / "movies.csv", 'id,genres\na,"Drama, Comedy"\nb,"Action, War"\n')
    with pytest.warns(CatalogWarning, match="set the genre separator to ','") as rec:
        cat = read_catalog(csv_path)
    assert rec[0].message.param == "genre_sep"
    assert cat.items[0].genres == ("Drama, Comedy",)
    assert read_catalog(csv_path, genre_sep=",").items[0].genres == ("Drama", "Comedy")


KAGGLE = (
    "imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"
    "114709,http://www.imdb.com/title/tt114709,Toy Story (1995),8.3,Animation|Adventure|Comedy,"
    "https://images-na.ssl-images-amazon.com/images/M/a.jpg\n"
    "113497,http://www.imdb.com/title/tt113497,Jumanji (1995),6.9,Action|Adventure|Family,"
    "https://images-na.ssl-images-amazon.com/images/M/b.jpg\n"
    "2345678,http://www.imdb.com/title/tt2345678,Señor Sin Año,,Drama,\n"
)


def test_kaggle_layout(tmp_path):
    write(tmp_path / "MovieGenre.csv", KAGGLE, encoding="latin-1")  # the real file is latin-1
    write(tmp_path / "posters" / "tt0114709.jpg", "x")
    write(tmp_path / "posters" / "113497.jpg", "x")  # Kaggle's own numeric file names are found too
    with pytest.warns(CatalogWarning, match="not valid UTF-8"):
        cat = read_catalog(tmp_path)
    assert cat.layout == "kaggle"
    toy, jumanji, senor = cat.items
    assert (toy.id, toy.title, toy.year) == ("tt0114709", "Toy Story", 1995)
    assert toy.genres == ("Animation", "Adventure", "Comedy") and toy.plot is None
    assert toy.poster == (tmp_path / "posters" / "tt0114709.jpg").absolute()
    assert jumanji.poster == (tmp_path / "posters" / "113497.jpg").absolute()
    # a missing poster keeps its expected path (the indexer reports it)
    assert senor.poster == (tmp_path / "posters" / "tt2345678.jpg").absolute()
    assert not senor.poster.exists()
    assert senor.title == "Señor Sin Año" and senor.year is None
    assert any("decoded as cp1252" in p for p in cat.problems)
    # explicit layout and a path to the file work the same
    with pytest.warns(CatalogWarning):
        again = read_catalog(tmp_path / "MovieGenre.csv", layout="kaggle")
    assert again.items == cat.items


def _mm_record(tmp_path, stem, **obj):
    write(tmp_path / "dataset" / f"{stem}.json", json.dumps(obj))


def test_mmimdb_layout(tmp_path):
    _mm_record(tmp_path, "0000008", title="Edison Kinetoscopic", year=1894,
               genres=["Short", "Documentary"], plot=["A man sneezes.::Author", "Another"])  # fmt: skip
    write(tmp_path / "dataset" / "0000008.jpeg", "x")
    _mm_record(tmp_path, "0000010", title="Workers", year="1895", genres=["documentary"],
               plot="Workers leave a factory.")  # fmt: skip
    _mm_record(tmp_path, "0000012", title="Nothing", genres=[], plot=[])
    write(tmp_path / "dataset" / "0000013.json", "{not json")
    write(tmp_path / "split.json", json.dumps({"train": ["0000008"], "dev": [], "test": []}))
    cat = read_catalog(tmp_path)
    assert cat.layout == "mmimdb"
    assert cat.ids == ["tt0000008", "tt0000010", "tt0000012"]
    a, b, c = cat.items
    assert a.genres == ("Short", "Documentary") and a.plot == "A man sneezes." and a.year == 1894
    assert a.poster == (tmp_path / "dataset" / "0000008.jpeg").absolute()
    assert b.year == 1895 and b.plot == "Workers leave a factory." and b.genres == ("Documentary",)
    assert not b.poster.exists() and b.poster.name == "0000010.jpeg"
    assert c.genres == () and c.plot is None
    assert any("0000013.json" in p and "not valid" in p for p in cat.problems)
    assert any("tt0000012 has no genres" in p for p in cat.problems)
    assert read_catalog(tmp_path / "dataset", layout="mmimdb").items == cat.items


# --- bad input: each read completes and loses nothing else ----------------------------------------


def test_duplicate_id_keeps_first(tmp_path):
    write(
        tmp_path / "movies.csv",
        HEADER + "tt1,First,,Drama,,\ntt2,B,,Comedy,,\ntt0000001,Again,,War,,\n",
    )
    cat = read_catalog(tmp_path)
    assert cat.ids == ["tt0000001", "tt0000002"]
    assert cat.items[0].title == "First"
    assert cat.problems == [
        "movies.csv line 4: duplicate id tt0000001 (first at line 2); kept the first"
    ]


def test_row_without_genres_is_kept_and_recorded(tmp_path):
    write(tmp_path / "movies.csv", HEADER + "tt1,A,,Drama,,\ntt2,B,,,,\ntt3,C,,| |,,\n")
    cat = read_catalog(tmp_path)
    assert cat.ids == ["tt0000001", "tt0000002", "tt0000003"]
    assert cat.items[1].genres == () and cat.items[2].genres == ()
    assert cat.label_matrix().sum(axis=1).tolist() == [1, 0, 0]
    assert len([p for p in cat.problems if "has no genres" in p]) == 2


def test_malformed_year(tmp_path):
    write(tmp_path / "movies.csv", HEADER + "tt1,A,19x5,Drama,,\ntt2,B,1999,Comedy,,\n")
    cat = read_catalog(tmp_path)
    assert [it.year for it in cat.items] == [None, 1999]
    assert cat.problems == ["movies.csv line 2: tt0000001 has year '19x5', not a year; set to None"]


def test_non_utf8_csv_is_read_with_warning(tmp_path):
    write(tmp_path / "movies.csv", HEADER + "tt1,Amélie,2001,Romance|Comedy,Café story,\n",
          encoding="cp1252")  # fmt: skip
    with pytest.warns(CatalogWarning, match=r"movies.csv is not valid UTF-8.*cp1252.*re-save"):
        cat = read_catalog(tmp_path)
    assert cat.items[0].title == "Amélie" and cat.items[0].plot == "Café story"
    # an explicit encoding reads it silently; a wrong explicit one is a clear error
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_catalog(tmp_path, encoding="cp1252").items[0].title == "Amélie"
    with pytest.raises(CatalogError, match=r"Cannot decode .*movies.csv as 'utf-8'.*real encoding"):
        read_catalog(tmp_path, encoding="utf-8")


def test_utf8_bom_is_fine(tmp_path):
    write(tmp_path / "movies.csv", "\ufeff" + HEADER + "tt1,A,,Drama,,\n")
    assert read_catalog(tmp_path).ids == ["tt0000001"]


def test_missing_required_column(tmp_path):
    write(tmp_path / "movies.csv", "imdb_id,title,tags\ntt1,A,Drama\n")
    with pytest.raises(CatalogError) as e:
        read_catalog(tmp_path)
    msg = str(e.value)
    assert "movies.csv" in msg and "no 'genres' column" in msg
    assert "columns found: imdb_id, title, tags" in msg
    assert "map the field to it: genres=COLUMN" in msg and e.value.param == "columns"
    assert read_catalog(tmp_path, columns={"genres": "tags"}).items[0].genres == ("Drama",)
    write(tmp_path / "b" / "movies.csv", "title,genres\nA,Drama\n")
    with pytest.raises(CatalogError, match=r"no 'id' column \(looked for imdb_id, id"):
        read_catalog(tmp_path / "b")


@pytest.mark.parametrize("text", ["", HEADER, HEADER + ",,,,,\n"])
def test_empty_catalog(tmp_path, text):
    write(tmp_path / "movies.csv", text)
    with pytest.raises(CatalogError, match=r"movies.csv (is empty|holds no movies).*Fix"):
        read_catalog(tmp_path)


def test_missing_poster_file_keeps_item(tmp_path):
    write(tmp_path / "movies.csv", HEADER + "tt1,A,,Drama,,posters/gone.jpg\n")
    cat = read_catalog(tmp_path)
    assert cat.items[0].poster == (tmp_path / "posters" / "gone.jpg").absolute()
    assert not cat.items[0].poster.exists()


def test_row_level_oddities(tmp_path):
    write(tmp_path / "movies.csv", HEADER + "tt1,A,,Drama,,,extra\n,B,,Comedy,,\ntt3,C,,War,,\n")
    cat = read_catalog(tmp_path)
    assert cat.ids == ["tt0000001", "tt0000003"]
    assert any("more fields than the header" in p for p in cat.problems)
    assert any("line 3: no id; row skipped" in p for p in cat.problems)


def test_bad_paths_and_options(tmp_path):
    with pytest.raises(CatalogError, match="does not exist.*Fix"):
        read_catalog(tmp_path / "nope")
    with pytest.raises(CatalogError, match=r"Cannot find a catalog in .*found no CSV files"):
        read_catalog(tmp_path)
    write(tmp_path / "a.csv", HEADER)
    write(tmp_path / "b.csv", HEADER)
    with pytest.raises(CatalogError, match=r"found a.csv, b.csv.*pass the CSV file itself"):
        read_catalog(tmp_path)
    with pytest.raises(
        CatalogError, match="Unknown catalog layout 'imdb'; choose one of auto, csv"
    ):
        read_catalog(tmp_path / "a.csv", layout="imdb")
    with pytest.raises(CatalogError, match="Unknown way 'keep' to treat rare genres") as e:
        read_catalog(tmp_path / "a.csv", rare="keep")
    assert e.value.param == "rare"
    with pytest.raises(CatalogError, match="genre limit must be a positive integer") as e:
        read_catalog(tmp_path / "a.csv", top_genres=0)
    assert e.value.param == "top_genres"
    assert issubclass(CatalogError, EmbedgenreError)


def test_layout_aliases(fixture_dir):
    assert read_catalog(fixture_dir, layout="movies-csv").layout == "csv"
    with pytest.raises(CatalogError, match="Cannot find a catalog"):
        read_catalog(fixture_dir / "posters", layout="csv")


def test_plot_text_puts_the_title_before_the_synopsis():
    from embedgenre.catalog import Item, plot_text

    assert plot_text("A heist goes wrong.", "Heat") == "Heat. A heist goes wrong."
    assert plot_text("  A heist goes wrong. ", None) == "A heist goes wrong."
    assert plot_text(None, "Heat") is None and plot_text("   ", "Heat") is None
    assert Item("tt1", title="Heat", plot="A heist.").plot_text == "Heat. A heist."


def test_paths_from_a_catalog_are_absolute_and_normalised(tmp_path, monkeypatch):
    (tmp_path / "cat" / "posters").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    Image.new("RGB", (8, 12)).save(tmp_path / "cat" / "posters" / "tt0000001.jpg")
    Image.new("RGB", (8, 12)).save(tmp_path / "cat" / "tt0000002.jpg")
    write(
        tmp_path / "cat" / "movies.csv",
        "imdb_id,title,genres,poster\ntt0000001,A,Drama,\ntt0000002,B,Drama,posters/../tt0000002.jpg\n",
    )
    monkeypatch.chdir(tmp_path / "other")
    cat = read_catalog("../other/../cat")
    posters = [it.poster for it in cat.items]
    assert posters == [
        tmp_path / "cat" / "posters" / "tt0000001.jpg",
        tmp_path / "cat" / "tt0000002.jpg",
    ]
    assert all(p.is_absolute() and ".." not in p.parts for p in [*posters, cat.root, cat.source])
