"""`embedgenre index LIBRARY` and `embedgenre tag LIBRARY` end to end, with the packaged offline
encoders and a kNN head trained on the library's own labelled movies."""

from __future__ import annotations

import json
import shutil

import pytest
from _library import (
    N_LABELLED,
    N_NO_NFO,
    N_UNLABELLED,
    fixture_rows,
    make_library,
    snapshot,
)
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.library.nfo import parse_nfo

runner = CliRunner()
ENCODERS = ["--image-encoder", "cnn:efficientnet-lite0", "--text-encoder", "st:all-MiniLM-L6-v2"]


def ok(*args) -> dict:
    result = runner.invoke(app, [*map(str, args), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, fixture_dir):
    tmp = tmp_path_factory.mktemp("library-cli")
    root = tmp / "Movies"
    movies = make_library(fixture_dir, root)
    before = snapshot(root)
    index = tmp / "index"
    first = ok("index", root, "--out", index, *ENCODERS)
    ok("train", index, "--method", "knn", "--k", "3", "--image-encoder", "cnn:efficientnet-lite0")
    return {"root": root, "movies": movies, "before": before, "index": index, "first": first}


def test_index_a_library_then_tag_it_dry_run_write_and_undo(tagged, fixture_dir):
    root, index, before = tagged["root"], tagged["index"], tagged["before"]
    first = tagged["first"]
    assert first["items"] == N_LABELLED + N_UNLABELLED + N_NO_NFO
    assert first["with_poster"] == first["items"]
    assert snapshot(root) == before  # indexing reads only

    dry = ok("tag", root, "--index", index)
    assert snapshot(root) == before and not (root / ".embedgenre").exists()
    assert dry["write"] is False and dry["head"]["method"] == "knn"
    proposed = {m["id"]: m for m in dry["movies"] if m["action"] == "add"}
    assert len(proposed) == N_UNLABELLED
    for m in proposed.values():
        assert m["add"] and all(0.0 <= g["score"] <= 1.0 for g in m["add"])
    no_nfo = [m for m in dry["movies"] if m["id"].startswith("lib-")]
    assert len(no_nfo) == N_NO_NFO and all(m["action"] == "skip" for m in no_nfo)

    text = runner.invoke(app, ["tag", str(root), "--index", str(index)])
    assert (
        text.exit_code == 0 and "would add" in text.stdout and "nothing was written" in text.stdout
    )

    wrote = ok("tag", root, "--index", index, "--write")
    assert wrote["counts"]["written"] == N_UNLABELLED
    after = snapshot(root)
    changed = {p for p in before if after[p] != before[p]}
    assert len(changed) == N_UNLABELLED and set(after) == set(before)
    for m in wrote["movies"]:
        if m["written"]:
            genres = parse_nfo((root / m["path"]).read_bytes()).genres
            assert (
                list(genres)
                == [g["genre"] for g in m["add"]]
                == [g["genre"] for g in proposed[m["id"]]["add"]]
            )

    # a re-run of index picks up the changed NFOs (their new labels) and a new movie; only the
    # new movie's poster is encoded
    new = root / "Movies" / "New Arrival (2020)"
    new.mkdir()
    (new / "New Arrival (2020).mkv").write_bytes(b"x")
    in_library = {r["poster"] for r in fixture_rows(fixture_dir, 100)}
    unused = sorted(
        p for p in (fixture_dir / "posters").iterdir() if f"posters/{p.name}" not in in_library
    )
    shutil.copy(unused[0], new / "poster.jpg")
    second = ok("index", root, "--out", index, *ENCODERS)
    assert second["items"] == first["items"] + 1
    poster_set = next(s for s in second["sets"] if s["modality"] == "poster")
    assert poster_set["encoded"] == 1 and poster_set["reused"] == first["items"]
    shutil.rmtree(new)
    labelled = sum(n for n in second["genres"].values())
    assert labelled > sum(n for n in first["genres"].values())

    undo = ok("tag", root, "--undo")
    assert len(undo["restored"]) == N_UNLABELLED and undo["refused"] == []
    assert snapshot(root) == before


def test_tag_needs_an_index_and_undo_takes_no_index(tagged):
    result = runner.invoke(app, ["tag", str(tagged["root"])])
    assert result.exit_code == 1 and "--index" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["tag", str(tagged["root"]), "--undo", "--write"])
    assert result.exit_code == 1 and "--undo takes only" in result.stderr


def test_undo_names_each_file_edited_since_and_exits_1(tagged):
    root, index, before = tagged["root"], tagged["index"], tagged["before"]
    # the index was refreshed with the tagged labels above: its head is trained again
    ok("train", index, "--method", "knn", "--k", "3", "--image-encoder", "cnn:efficientnet-lite0")
    wrote = ok("tag", root, "--index", index, "--write")
    edited = root / next(m["path"] for m in wrote["movies"] if m["written"])
    edited.write_bytes(edited.read_bytes() + b"<!-- edited in the media server -->\n")
    result = runner.invoke(app, ["tag", str(root), "--undo"])
    assert result.exit_code == 1, result.output
    rel = edited.relative_to(root).as_posix()
    assert "left as it is:" in result.stderr and rel in " ".join(result.stderr.split())
    assert f"{N_UNLABELLED - 1} file(s) restored, 1 refused" in result.stdout
    edited.write_bytes(edited.read_bytes().replace(b"<!-- edited in the media server -->\n", b""))
    assert ok("tag", root, "--undo")["restored"] == [rel]
    assert snapshot(root) == before
