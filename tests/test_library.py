"""Media libraries in place: reading a Kodi / Jellyfin library, hostile NFOs, byte-preserving
genre writes, the journal and undo (predictions from a stand-in here; the real Predictor runs in
test_library_cli.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _library import N_LABELLED, N_NO_NFO, N_UNLABELLED, inserted_only, make_library, snapshot

from embedgenre.catalog import read_catalog
from embedgenre.errors import CatalogError
from embedgenre.library.edit import add_genres
from embedgenre.library.nfo import MAX_NFO_BYTES, NfoError, parse_nfo
from embedgenre.library.tag import STATE_DIR, tag_library, undo_tags

SCORES = {"Drama": 0.9, "Comedy": 0.7, "Horror": 0.55, "Western": 0.2}


class FixedPredictor:
    """Stands in for Predictor: the same scores for every movie with a plot or a poster."""

    def __init__(self):
        self.asked: list[str] = []

    def predict_catalog(self, catalog, batch_size=64, top=None):
        rows = []
        for it in catalog.items:
            self.asked.append(it.id)
            rows.append(
                {
                    "id": it.id,
                    "genres": [g for g, s in SCORES.items() if s >= 0.5],
                    "scores": dict(SCORES),
                    "error": None,
                }
            )
        return {"name": "fixed", "method": "test", "modality": "both"}, rows


@pytest.fixture()
def library(tmp_path, fixture_dir):
    root = tmp_path / "Library"
    return root, make_library(fixture_dir, root)


def test_a_library_is_read_as_it_stands(library):
    root, movies = library
    cat = read_catalog(root)
    assert cat.layout == "library"
    assert cat.problems == []
    by_id = {it.id: it for it in cat.items}
    nfo_ids = [i for i, m in movies.items() if m["nfo"]]
    assert set(nfo_ids) <= set(by_id)
    assert len(cat.items) == N_LABELLED + N_UNLABELLED + N_NO_NFO
    for imdb_id, m in movies.items():
        row = m["row"]
        if not m["nfo"]:
            continue
        it = by_id[imdb_id]
        assert it.title == m["title"]
        assert it.year == int(row["year"])
        assert it.plot == row["plot"]  # <plot>, or <outline> in the tinyMediaManager style
        assert it.poster is not None and it.poster.is_file()
        assert it.genres == (tuple(row["genres"].split("|")) if m["labelled"] else ())
    # without an NFO: title and year from the name, a path hash as id, the poster, no genres
    bare = [it for it in cat.items if it.id.startswith("lib-")]
    assert len(bare) == N_NO_NFO
    titles = {m["row"]["title"].replace(":", " -"): m for m in movies.values() if not m["nfo"]}
    for it in bare:
        assert it.title in titles and it.year == int(titles[it.title]["row"]["year"])
        assert it.genres == () and it.plot is None and it.poster.is_file()
    # the same ids on a second read (stable hashes)
    assert read_catalog(root).ids == cat.ids
    # a TV show and a trailer are not movies
    assert not any("Show" in (it.title or "") or it.title == "trailer" for it in cat.items)


def test_jellyfin_ids_in_folder_names_and_a_tmdb_only_nfo(tmp_path):
    (tmp_path / "Alien (1979) [imdbid-tt0078748]").mkdir()
    (tmp_path / "Alien (1979) [imdbid-tt0078748]" / "Alien.mkv").write_bytes(b"x")
    (tmp_path / "Heat (1995)").mkdir()
    (tmp_path / "Heat (1995)" / "Heat.mkv").write_bytes(b"x")
    (tmp_path / "Heat (1995)" / "movie.nfo").write_text(
        '<movie><title>Heat</title><uniqueid type="tmdb">949</uniqueid>'
        "<genre>Crime / Drama</genre></movie>"
    )
    (tmp_path / "Brazil (1985)").mkdir()  # two parts of one movie
    for part in ("Brazil-cd1.avi", "Brazil-cd2.avi", "Brazil-trailer.mkv"):
        (tmp_path / "Brazil (1985)" / part).write_bytes(b"x")
    (tmp_path / "Casablanca (1942)" / "VIDEO_TS").mkdir(parents=True)  # a DVD folder
    (tmp_path / "Casablanca (1942)" / "VIDEO_TS" / "VTS_01_1.VOB").write_bytes(b"x")
    cat = read_catalog(tmp_path, layout="jellyfin")
    assert [(it.id[:4], it.title, it.year) for it in cat.items] == [
        ("tt00", "Alien", 1979),
        ("lib-", "Brazil", 1985),
        ("lib-", "Casablanca", 1942),
        ("tmdb", "Heat", 1995),
    ]
    cat.items = [cat.items[0], cat.items[3]]
    assert [(it.id, it.title, it.year, it.genres) for it in cat.items] == [
        ("tt0078748", "Alien", 1979, ()),
        ("tmdb949", "Heat", 1995, ("Crime", "Drama")),  # the year from the folder name
    ]


def _hostile_library(tmp_path):
    """A library with one good movie and one of each hostile NFO; a secret outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    (outside / "evil.dtd").write_text('<!ENTITY x SYSTEM "file://' + str(secret) + '">')
    (outside / "Elsewhere (2001)").mkdir()
    (outside / "Elsewhere (2001)" / "Elsewhere.mkv").write_bytes(b"x")
    (outside / "Elsewhere (2001)" / "movie.nfo").write_text("<movie><title>X</title></movie>")
    root = tmp_path / "lib"
    nfos = {
        "Good (2000)": "<movie><title>Good</title><genre>Drama</genre></movie>",
        "Laughs (2001)": (
            '<?xml version="1.0"?><!DOCTYPE movie [<!ENTITY a "haha">'
            + "".join(
                f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi")
            )
            + "]><movie><title>&i;</title></movie>"
        ),
        "Entity (2002)": (
            f'<?xml version="1.0"?><!DOCTYPE movie [<!ENTITY s SYSTEM "file://{secret}">]>'
            "<movie><title>x</title><plot>&s;</plot></movie>"
        ),
        "Dtd (2003)": (
            f'<?xml version="1.0"?><!DOCTYPE movie SYSTEM "file://{outside / "evil.dtd"}">'
            "<movie><title>x</title></movie>"
        ),
        "Text (2004)": "This is not XML: https://www.imdb.com/title/tt0000001/\n",
        "Show (2005)": "<tvshow><title>x</title></tvshow>",
    }
    for name, text in nfos.items():
        (root / name).mkdir(parents=True)
        (root / name / "video.mkv").write_bytes(b"x")
        (root / name / "movie.nfo").write_text(text)
    (root / "Huge (2006)").mkdir()
    (root / "Huge (2006)" / "video.mkv").write_bytes(b"x")
    with open(root / "Huge (2006)" / "movie.nfo", "wb") as f:
        f.write(b"<movie><title>")
        f.truncate(50 * 1024 * 1024)
    (root / "Link (2007)").mkdir()
    (root / "Link (2007)" / "video.mkv").write_bytes(b"x")
    os.symlink(secret, root / "Link (2007)" / "movie.nfo")
    (root / "Poster (2008)").mkdir()
    (root / "Poster (2008)" / "video.mkv").write_bytes(b"x")
    os.symlink(secret, root / "Poster (2008)" / "poster.jpg")
    os.symlink(outside / "Elsewhere (2001)", root / "Elsewhere (2001)")
    return root, outside


def test_hostile_nfos_are_skipped_with_a_reason_and_nothing_outside_is_read(tmp_path):
    root, outside = _hostile_library(tmp_path)
    opened: list[str] = []
    watching = [True]

    def audit(event, args):
        if watching[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(audit)
    try:
        cat = read_catalog(root)
    finally:
        watching[0] = False
    assert not [p for p in opened if str(outside) in os.path.realpath(p)], opened
    assert [it.title for it in cat.items] == ["Good", "Poster"]
    assert "Elsewhere (2001): a link to a folder; not followed" in cat.problems
    assert cat.items[1].poster is None
    problems = "\n".join(cat.problems)
    for name, reason in [
        ("Laughs", "<!DOCTYPE> or XML entities"),
        ("Entity", "<!DOCTYPE> or XML entities"),
        ("Dtd", "<!DOCTYPE> or XML entities"),
        ("Text", "not well-formed XML"),
        ("Show", "not a movie NFO"),
        ("Huge", f"over the {MAX_NFO_BYTES:,}-byte limit"),
        ("Link", "leads out of the library"),
        ("Poster", "poster poster.jpg leads out of the library"),
    ]:
        line = next((p for p in cat.problems if p.startswith(name)), "")
        assert reason in line, (name, problems)
    assert "TOP-SECRET" not in repr(cat.items)


def test_genres_go_after_the_last_genre_or_before_the_end_tag_in_the_files_style():
    crlf = (
        b'<?xml version="1.0"?>\r\n<movie>\r\n\t<title>A</title>\r\n\t<genre>Drama</genre>\r\n'
        b"\t<tag>x</tag>\r\n</movie>\r\n"
    )
    assert add_genres(crlf, ["Comedy", "Rock & Roll"]) == crlf.replace(
        b"Drama</genre>",
        b"Drama</genre>\r\n\t<genre>Comedy</genre>\r\n\t<genre>Rock &amp; Roll</genre>",
    )
    # no genre yet: a line of its own before </movie>, indented like the last child; a comment
    # that looks like the end tag and a <genre> of a nested element do not count
    none = b"<movie>\n  <title>A</title>\n  <!-- </movie> -->\n  <set><genre>x</genre></set>\n</movie>\n"
    out = add_genres(none, ["Comedy"])
    assert out == none.replace(b"</set>\n", b"</set>\n  <genre>Comedy</genre>\n")
    assert parse_nfo(out).genres == ("Comedy",)
    one_line = b"<movie><title>A</title></movie>"
    assert add_genres(one_line, ["War"]) == b"<movie><title>A</title><genre>War</genre></movie>"
    utf16 = (
        '\ufeff<?xml version="1.0" encoding="UTF-16"?>\n<movie>\n <genre>Drama</genre>\n</movie>\n'
    )
    out = add_genres(utf16.encode("utf-16-le"), ["Crime"])
    assert out == utf16.replace("</genre>", "</genre>\n <genre>Crime</genre>").encode("utf-16-le")
    latin = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<movie><title>Café</title>\n</movie>\n'
    out = add_genres(latin.encode("latin-1"), ["Ça", "東"])
    expected = latin.replace("</title>\n", "</title>\n<genre>Ça</genre><genre>&#26481;</genre>")
    assert out == expected.encode("latin-1")
    assert parse_nfo(out).genres == ("Ça", "東")
    with pytest.raises(NfoError, match="not well-formed"):
        add_genres(b"<movie><title>A</title>", ["War"])
    # Kodi's combination NFO: the XML, then a scraper URL
    combo = b"<movie>\n  <title>A</title>\n</movie>\nhttps://www.themoviedb.org/movie/949\n"
    assert add_genres(combo, ["War"]) == combo.replace(
        b"</movie>", b"  <genre>War</genre>\n</movie>"
    )


def test_dry_run_write_add_and_undo_keep_every_other_byte(library):
    root, movies = library
    before = snapshot(root)
    raw_before = {p: (root / p).read_bytes() for p in before}
    predictor = FixedPredictor()

    plan = tag_library(root, predictor)  # dry run
    assert snapshot(root) == before and not (root / STATE_DIR).exists()
    would = {e.id: [g.genre for g in e.add] for e in plan.entries if e.action == "add"}
    unlabelled = {i for i, m in movies.items() if m["nfo"] and not m["labelled"]}
    assert set(would) == unlabelled
    assert all(genres == ["Drama", "Comedy", "Horror"] for genres in would.values())
    assert sorted(predictor.asked) == sorted(
        [i for i, m in movies.items() if not m["labelled"] and m["nfo"]]
        + [e.id for e in plan.entries if e.id.startswith("lib-")]
    )  # labelled movies are not even predicted without add
    assert plan.counts()["skip"] == N_NO_NFO  # no NFO and none created

    shared = next(m["nfo"] for m in movies.values() if m["nfo"] and not m["labelled"])
    shared.chmod(0o664)  # the media server's group must still read it
    plan = tag_library(root, FixedPredictor(), write=True)
    assert plan.counts()["written"] == N_UNLABELLED
    assert shared.stat().st_mode & 0o777 == 0o664
    after = snapshot(root)
    changed = {p for p in before if after[p] != before[p]}
    assert changed == {m["nfo"].relative_to(root).as_posix() for m in movies.values()
                       if m["nfo"] and not m["labelled"]}  # fmt: skip
    assert set(after) == set(before)  # no file created
    for p in changed:
        raw = (root / p).read_bytes()
        inserted_only(raw_before[p], raw)  # asserts one insertion, every other byte kept
        if b"\r\n" in raw_before[p]:
            assert raw.count(b"\r\n") == raw_before[p].count(b"\r\n") + 3
        assert raw.count(b"\r") - raw_before[p].count(b"\r") in (0, 3)
        assert raw.count(b"\n") == raw_before[p].count(b"\n") + 3
        assert parse_nfo(raw).genres == ("Drama", "Comedy", "Horror")
        assert raw.startswith(b"\xef\xbb\xbf") == raw_before[p].startswith(b"\xef\xbb\xbf")

    # a second run finds nothing more to add; --add with a bar adds only above it
    assert tag_library(root, FixedPredictor(), write=True).counts()["written"] == 0
    plan = tag_library(root, FixedPredictor(), write=True, add=True, min_score=0.6)
    added = {e.id: [g.genre for g in e.add] for e in plan.entries if e.written}
    for i, genres in added.items():
        assert movies[i]["labelled"]
        assert genres == [g for g in ("Drama", "Comedy") if g not in movies[i]["row"]["genres"]]
    assert added

    result = undo_tags(root)
    assert result.refused == []
    assert snapshot(root) == before
    assert {p: (root / p).read_bytes() for p in before} == raw_before
    assert not (root / STATE_DIR).exists()  # no journal, backup or lock left behind
    assert undo_tags(root).restored == []


def test_undo_refuses_a_file_edited_since_and_restores_the_others(library):
    root, movies = library
    before = snapshot(root)
    tag_library(root, FixedPredictor(), write=True)
    edited = next(m["nfo"] for m in movies.values() if m["nfo"] and not m["labelled"])
    edited.write_bytes(edited.read_bytes().replace(b"</movie>", b"<!-- mine --></movie>"))
    mine = edited.read_bytes()
    result = undo_tags(root)
    rel = edited.relative_to(root).as_posix()
    assert [r["path"] for r in result.refused] == [rel]
    assert "edited since" in result.refused[0]["reason"]
    assert len(result.restored) == N_UNLABELLED - 1
    assert edited.read_bytes() == mine
    after = snapshot(root)
    assert {p for p in before if after[p] != before[p]} == {rel}
    # the refused file's journal line and backup are kept for a later undo
    edited.write_bytes(mine.replace(b"<!-- mine -->", b""))
    assert undo_tags(root).restored == [rel]
    assert snapshot(root) == before


def test_create_nfo_only_when_asked_and_undo_removes_it(library):
    root, movies = library
    before = snapshot(root)
    plan = tag_library(root, FixedPredictor(), write=True, create_nfo=True)
    created = [root / e.path for e in plan.entries if e.action == "create" and e.written]
    assert len(created) == N_NO_NFO
    for path in created:
        data = parse_nfo(path.read_bytes())
        assert data.genres == ("Drama", "Comedy", "Horror") and data.title
    assert read_catalog(root).ids  # the new NFOs read back
    undo_tags(root)
    assert snapshot(root) == before


def test_a_file_that_is_not_a_library(tmp_path):
    with pytest.raises(CatalogError, match="not a folder"):
        tag_library(tmp_path / "nope", FixedPredictor())


def test_a_file_that_cannot_be_written_is_reported_and_the_others_are_written(library, monkeypatch):
    from embedgenre.errors import WriteError
    from embedgenre.library import tag

    root, movies = library
    before = snapshot(root)
    stuck = next(m["nfo"] for m in movies.values() if m["nfo"] and not m["labelled"])
    real_write = tag.write_bytes

    def write_bytes(path, data, mode=None):
        if Path(path) == stuck:
            raise WriteError(f"cannot write {path}: Read-only file system")
        return real_write(path, data, mode=mode)

    monkeypatch.setattr(tag, "write_bytes", write_bytes)
    plan = tag_library(root, FixedPredictor(), write=True)
    assert plan.counts()["written"] == N_UNLABELLED - 1
    entry = next(e for e in plan.entries if root / e.path == stuck)
    assert entry.action == "skip" and "Read-only file system" in entry.reason
    assert (
        snapshot(root)[stuck.relative_to(root).as_posix()]
        == before[stuck.relative_to(root).as_posix()]
    )
    monkeypatch.undo()
    result = undo_tags(root)  # the journal line of the unwritten file needs nothing
    assert len(result.restored) == N_UNLABELLED - 1 and result.refused == []
    assert snapshot(root) == before
