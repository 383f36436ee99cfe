"""The kept genre vocabulary: an index's genres keep their order when movies are added, new genres
are appended, unused ones stay until dropped; heads map their scores by genre name, so every saved
head keeps predicting after new movies (and a new genre) arrive, through the library, the CLI and a
server that follows new generations without fitting anything."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _catalogs import make_catalog
from _fakes import Factory, build
from _tiny_clip import imported_tiny_clip
from typer.testing import CliRunner

from embedgenre import vocabulary
from embedgenre.cli.app import app
from embedgenre.errors import IndexStoreError, PredictorError
from embedgenre.heads import choose_head, load_head, train_head
from embedgenre.predictors import HeadSpec
from embedgenre.store import GenreIndex
from embedgenre.store.schema import FORMAT_VERSION, parse_manifest

runner = CliRunner()
NEW_GENRE = "Western"
V1_INDEX = Path(__file__).parent / "data" / "index_v1"


def fixture_rows(fixture_dir: Path) -> list[dict]:
    with open(fixture_dir / "movies.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_catalog(root: Path, rows: list[dict], fixture_dir: Path) -> Path:
    """movies.csv in ``root`` with the rows' fixture posters copied beside it."""
    (root / "posters").mkdir(parents=True, exist_ok=True)
    for r in rows:
        if not (root / r["poster"]).exists():
            shutil.copy(fixture_dir / r["poster"], root / r["poster"])
    return make_catalog(root, rows)


def first_40_then_60(fixture_dir: Path) -> tuple[list[dict], list[dict]]:
    """40 fixture movies, then the same plus 20 more and one movie of a genre new to the index;
    the 20 change the genres' frequency order (checked, so the tests below mean something)."""
    rows = fixture_rows(fixture_dir)
    first = rows[:40]
    extra = {**rows[60], "imdb_id": "tt9999901", "genres": f"Drama|{NEW_GENRE}"}
    second = rows[:60] + [extra]
    assert vocabulary.by_frequency(r["genres"].split("|") for r in first) != [
        g for g in vocabulary.by_frequency(r["genres"].split("|") for r in second) if g != NEW_GENRE
    ], "the added movies must reorder the genres by frequency"
    return first, second


# ------------------------------------------------------------------------------ the vocabulary


def test_extend_keeps_positions_appends_new_and_keeps_unused_until_dropped():
    new = vocabulary.extend(None, {"Drama": 3, "Comedy": 5}, ["Comedy", "Drama"])
    assert new.vocabulary.genres == ("Comedy", "Drama") and new.added == ["Comedy", "Drama"]

    counts = {"Drama": 9, "Comedy": 1, "Western": 2}  # Drama now the most frequent
    later = vocabulary.extend(["Comedy", "Drama"], counts, ["Drama", "Western", "Comedy"])
    assert later.vocabulary.genres == ("Comedy", "Drama", "Western")
    assert later.added == ["Western"] and later.retired == [] and later.dropped == []

    gone = vocabulary.extend(["Comedy", "Drama", "Western"], {"Drama": 4, "Western": 1}, [])
    assert gone.vocabulary.genres == ("Comedy", "Drama", "Western")
    assert gone.vocabulary.counts == {"Comedy": 0, "Drama": 4, "Western": 1}
    assert gone.retired == ["Comedy"] and gone.vocabulary.active == ["Drama", "Western"]

    dropped = vocabulary.extend(["Comedy", "Drama"], {"Drama": 4}, ["Drama"], drop_unused=True)
    assert dropped.vocabulary.genres == ("Drama",) and dropped.dropped == ["Comedy"]
    assert dropped.retired == []


def test_coverage_matches_by_name_in_any_order():
    cov = vocabulary.coverage(["Horror", "Drama", "Gone"], ["Drama", "Comedy", "Horror"])
    assert cov.scored == ["Drama", "Horror"]
    assert cov.unscored == ["Comedy"] and cov.unknown == ["Gone"]


# ------------------------------------------------------------------------ manifest and index


def test_older_manifests_keep_their_genre_order(tmp_path):
    doc = json.loads((V1_INDEX / "manifest.json").read_text())
    doc["genres"] = ["Horror", "Drama", "Comedy"]  # not the frequency order
    m = parse_manifest(doc, V1_INDEX)
    assert m.genres == ["Horror", "Drama", "Comedy"]
    assert m.genre_counts == {"Horror": 5, "Drama": 16, "Comedy": 5}
    assert m.to_dict()["format_version"] == FORMAT_VERSION == 3

    out = tmp_path / "v1"
    shutil.copytree(V1_INDEX, out)
    assert GenreIndex.open(out).genres == ["Drama", "Comedy", "Horror"]


@pytest.mark.parametrize(
    "counts", [{"Drama": 16, "Comedy": 5}, {"Drama": 1, "Comedy": 1, "Horror": 1, "X": 1}]
)
def test_a_count_for_each_genre_and_no_other_is_required(counts):
    doc = json.loads((V1_INDEX / "manifest.json").read_text())
    doc.update(format_version=FORMAT_VERSION, genre_counts=counts)
    with pytest.raises(IndexStoreError, match="genre_counts should be a count >= 0 for each"):
        parse_manifest(doc, V1_INDEX)


def test_reindex_keeps_the_order_appends_and_retires(fixture_dir, tmp_path):
    first, second = first_40_then_60(fixture_dir)
    root, out = tmp_path / "cat", tmp_path / "idx"
    build(write_catalog(root, first, fixture_dir), out, Factory())
    before = GenreIndex.open(out).genres

    summary = build(write_catalog(root, second, fixture_dir), out, Factory())
    after = GenreIndex.open(out)
    assert after.genres == before + [NEW_GENRE] and summary.new_genres == [NEW_GENRE]
    assert after.manifest.genre_counts[NEW_GENRE] == 1
    for i, r in enumerate(second):  # the labels still follow the vocabulary
        assert {g for g, y in zip(after.genres, after.labels[i]) if y} == set(
            r["genres"].split("|")
        )

    # no movie carries the first genre any more: it is kept, counted 0, out of the label columns
    gone = before[0]
    rest = [
        {**r, "genres": "|".join(g for g in r["genres"].split("|") if g != gone)} for r in second
    ]
    make_catalog(root, rest)
    summary = build(root, out, Factory())
    kept = GenreIndex.open(out)
    assert kept.manifest.genres == before + [NEW_GENRE]
    assert kept.manifest.genre_counts[gone] == 0 and summary.retired_genres == [gone]
    assert kept.genres == before[1:] + [NEW_GENRE] and kept.retired_genres == [gone]
    assert kept.labels.shape == (len(rest), len(before))

    summary = build(root, out, Factory(), drop_unused_genres=True)
    dropped = GenreIndex.open(out)
    assert dropped.manifest.genres == before[1:] + [NEW_GENRE] and summary.dropped_genres == [gone]


def test_head_from_before_new_movies_scores_what_it_knows(fixture_dir, tmp_path):
    first, second = first_40_then_60(fixture_dir)
    root, out = tmp_path / "cat", tmp_path / "idx"
    build(write_catalog(root, first, fixture_dir), out, Factory())
    old = GenreIndex.open(out)
    spec = HeadSpec("linear", "poster", folds=None)
    trained = train_head(old, spec, name="old")
    X = old.get_set("poster").vectors[:3]
    want = trained.predictor.predict_proba(X)

    build(write_catalog(root, second, fixture_dir), out, Factory())
    new = GenreIndex.open(out)
    head = load_head(new, "old")
    assert head.genres == old.genres and head.unscored == [NEW_GENRE]
    np.testing.assert_array_equal(head.predictor.predict_proba(X), want)
    assert head.describe()["unscored_genres"] == [NEW_GENRE]
    # a head trained now knows every genre and is preferred to the older one
    train_head(new, spec, name="new")
    assert choose_head(new, True, False).name == "new"

    # a head with no genre in common with the index is refused, naming the fix
    doc_path = new.head_dir("old") / "head.json"
    doc = json.loads(doc_path.read_text())
    doc["genres"] = [f"Other{i}" for i in range(len(doc["genres"]))]
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="scores none of the .* genres.*embedgenre train"):
        load_head(new, "old")


# ------------------------------------------------------------------------ CLI and server


def ok(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """This module's own encoder cache (tiny CLIP exports are keyed by their temporary path)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBEDGENRE_CACHE", str(tmp_path_factory.mktemp("vocab-cache")))
        mp.setenv("EMBEDGENRE_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def grown(own_cache, fixture_dir, tmp_path_factory):
    """A tiny-CLIP index of 40 movies with a head of every method saved, and the catalog of
    60 + 1 movies (one of a new genre) it grows into."""
    tmp = tmp_path_factory.mktemp("vocab")
    clip, _ = imported_tiny_clip(tmp / "clip")
    first, second = first_40_then_60(fixture_dir)
    root, out = tmp / "cat", tmp / "index"
    write_catalog(root, first, fixture_dir)
    ok(*index_args(root, out, clip))
    heads = {
        "linear-poster": ["--method", "linear", "--modality", "poster"],
        "mlp-poster": ["--method", "mlp", "--modality", "poster"],
        "knn-plot": ["--method", "knn", "--modality", "plot"],
        "mlknn-poster": ["--method", "mlknn", "--modality", "poster"],
        "zeroshot-poster": ["--method", "zeroshot", "--modality", "poster"],
        "late-both": ["--method", "linear", "--modality", "both", "--fusion", "late"],
    }
    for name, opts in heads.items():
        ok("train", str(out), *opts, "--name", name, "--folds", "0")
    old_genres = GenreIndex.open(out).genres
    return {"root": root, "out": out, "clip": clip, "heads": heads, "old": old_genres,
            "rows": second}  # fmt: skip


def index_args(root: Path, out: Path, clip: str) -> list[str]:
    return ["index", str(root), "--out", str(out), "--image-encoder", clip, "--text-encoder", clip]


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_every_saved_head_predicts_after_new_movies_and_a_new_genre(grown, fixture_dir):
    out = grown["out"]
    poster = str(fixture_dir / fixture_rows(fixture_dir)[80]["poster"])
    plot = "A crew of smugglers crosses the galaxy."

    def predict(name: str, json_out: bool = True):
        modality = grown["heads"][name][grown["heads"][name].index("--modality") + 1]
        given = ([poster] if modality != "plot" else []) + (
            ["--plot", plot] if modality != "poster" else []
        )
        args = ["predict", *given, "--index", str(out), "--head", name]
        return ok(*args) if json_out else runner.invoke(app, args)

    before = {name: predict(name) for name in grown["heads"]}
    write_catalog(grown["root"], grown["rows"], fixture_dir)
    summary = ok(*index_args(grown["root"], out, grown["clip"]))
    assert summary["new_genres"] == [NEW_GENRE]
    assert GenreIndex.open(out).genres == grown["old"] + [NEW_GENRE]

    for name in grown["heads"]:
        res = predict(name)
        assert res["head"]["name"] == name and res["head"]["unscored_genres"] == [NEW_GENRE]
        assert res["results"] == before[name]["results"], name  # the same head, the same scores
        text = predict(name, json_out=False)
        assert text.exit_code == 0 and f"cannot score them: {NEW_GENRE}" in text.output
    # without --head the best saved head answers (no zero-shot head is fitted instead)
    res = ok("predict", poster, "--index", str(out))
    assert res["head"]["name"] in grown["heads"] and res["head"]["saved"]
    assert {h.name for h in GenreIndex.open(out).heads} == set(grown["heads"])


def test_a_server_following_new_generations_fits_nothing(grown, fixture_dir, monkeypatch, tmp_path):
    from fastapi.testclient import TestClient

    import embedgenre.heads.choose as choose
    from embedgenre.serve import ServeConfig, create_app
    from embedgenre.serve.service import Service

    # an index with a saved poster head only: plots are answered by a zero-shot head that the
    # read-only server fits once and cannot save
    root, out = tmp_path / "cat", tmp_path / "index"
    write_catalog(root, fixture_rows(fixture_dir)[:40], fixture_dir)
    args = index_args(root, out, grown["clip"])
    ok(*args)
    ok("train", str(out), "--method", "linear", "--modality", "poster", "--folds", "0")

    fits = []
    real_train = choose.train_head
    monkeypatch.setattr(choose, "train_head", lambda *a, **k: fits.append(a) or real_train(*a, **k))
    service = Service(ServeConfig(index_dir=out, reload_interval_s=3600))  # reloads when asked
    service.start()
    try:
        gen0 = service.current
        poster_head = gen0.predictor().query_encoders(True, False).head
        plot_head = gen0.predictor().query_encoders(False, True).head
        assert plot_head.method == "zeroshot" and not plot_head.saved and len(fits) == 1

        write_catalog(root, grown["rows"], fixture_dir)
        ok(*args)
        assert service.reload_if_changed()
        gen1 = service.current
        assert gen1.number > gen0.number and len(fits) == 1, "a reload must fit nothing"
        again = gen1.predictor().query_encoders(True, False).head
        assert again.predictor is poster_head.predictor and again.unscored == [NEW_GENRE]
        zs = gen1.predictor().query_encoders(False, True).head
        assert zs.predictor is plot_head.predictor and zs.unscored == [NEW_GENRE]

        poster = fixture_dir / fixture_rows(fixture_dir)[80]["poster"]
        with TestClient(create_app(service.config, service), base_url="http://127.0.0.1") as client:
            files = {"poster": ("p.jpg", poster.read_bytes(), "image/jpeg")}
            r = client.post("/v1/predict", files=files)
            assert r.status_code == 200, r.text
            assert r.json()["head"]["unscored_genres"] == [NEW_GENRE]
            r = client.post("/v1/predict", data={"plot": "A haunted house."})
            assert r.status_code == 200, r.text
        assert len(fits) == 1
    finally:
        service.close()


def test_evaluate_and_train_follow_the_kept_order(grown, fixture_dir, tmp_path):
    out = grown["out"]
    write_catalog(grown["root"], grown["rows"], fixture_dir)
    ok(*index_args(grown["root"], out, grown["clip"]))  # grown (nothing to do when it is)
    idx = GenreIndex.open(out)
    assert idx.genres == grown["old"] + [NEW_GENRE]
    assert idx.genres != vocabulary.by_frequency(r["genres"].split("|") for r in grown["rows"])
    head = train_head(idx, HeadSpec("linear", "poster", folds=None), name="fresh", save=False)
    assert head.genres == idx.genres and list(head.predictor.classes_) == idx.genres
    fast = ["--shots", "none", "--no-scratch-cnn", "--folds", "0"]
    report = ["--report", str(tmp_path / "report")]
    res = ok("evaluate", str(out), "--methods", "linear", "--modalities", "poster", *fast, *report)
    assert res["info"]["genres"] == idx.genres


def test_an_unused_genre_stays_until_dropped_through_the_cli(grown, fixture_dir):
    out, root = grown["out"], grown["root"]
    rows = [{**r, "genres": r["genres"].replace(f"|{NEW_GENRE}", "")} for r in grown["rows"]]
    write_catalog(root, rows, fixture_dir)
    summary = ok(*index_args(root, out, grown["clip"]))
    assert summary["retired_genres"] == [NEW_GENRE] and summary["genres"][NEW_GENRE] == 0
    assert ok("info", str(out))["retired_genres"] == [NEW_GENRE]
    res = ok("predict", "--plot", "A heist.", "--index", str(out), "--head", "knn-plot")
    assert res["head"]["unscored_genres"] == []  # a retired genre is no label to score
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "retired" in info.output

    summary = ok(*index_args(root, out, grown["clip"]), "--drop-unused-genres")
    assert summary["dropped_genres"] == [NEW_GENRE] and NEW_GENRE not in summary["genres"]
    assert GenreIndex.open(out).manifest.genres == grown["old"]
