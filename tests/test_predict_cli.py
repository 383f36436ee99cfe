"""`embedgenre train` / `embedgenre predict` on a small real index (fixture movies, packaged
encoders and a tiny random CLIP), including every bad-input case."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from _tiny_clip import imported_tiny_clip
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.store import GenreIndex

runner = CliRunner()
BROKEN_ID = "tt9999990"  # the only "Zombie" movie; its poster is an empty file


def _write_catalog(dest, rows, fixture_dir):
    (dest / "posters").mkdir(parents=True)
    for r in rows:
        if (fixture_dir / r["poster"]).exists():
            shutil.copy(fixture_dir / r["poster"], dest / r["poster"])
    with open(dest / "movies.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def data(fixture_dir, tmp_path_factory):
    """40 fixture movies + one whose poster is empty; posters by EfficientNet-Lite0 and a tiny
    CLIP, plots by the MiniLM + LSA hybrid. And a 6-movie index with no genre labels (plain
    MiniLM plots)."""
    from embedgenre.catalog import read_catalog
    from embedgenre.encoders import create_encoder
    from embedgenre.indexing import build_index

    loaded = {}

    def encoder(name):  # each encoder loaded once for both indexes
        if name not in loaded:
            loaded[name] = create_encoder(name, device="cpu")
        return loaded[name]

    tmp = tmp_path_factory.mktemp("predict-cli")
    with open(fixture_dir / "movies.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labelled = rows[:40] + [
        {
            **rows[0],
            "imdb_id": BROKEN_ID,
            "genres": "Zombie",
            "plot": "",
            "poster": f"posters/{BROKEN_ID}.jpg",
        }
    ]
    _write_catalog(tmp / "catalog", labelled, fixture_dir)
    (tmp / "catalog" / "posters" / f"{BROKEN_ID}.jpg").write_bytes(b"")
    clip_name, _ = imported_tiny_clip(tmp / "clip")
    build_index(
        read_catalog(tmp / "catalog"),
        tmp / "index",
        image_encoders=["cnn:efficientnet-lite0", clip_name],
        text_encoders=["hybrid:all-MiniLM-L6-v2"],
        encoder_factory=encoder,
    )
    _write_catalog(tmp / "nolabels", [{**r, "genres": ""} for r in rows[50:56]], fixture_dir)
    build_index(
        read_catalog(tmp / "nolabels"),
        tmp / "nolabels-index",
        image_encoders=[],
        text_encoders=["st:all-MiniLM-L6-v2"],
        encoder_factory=encoder,
    )
    poster = fixture_dir / rows[60]["poster"]
    return {
        "tmp": tmp,
        "index": tmp / "index",
        "nolabels": tmp / "nolabels-index",
        "clip": clip_name,
        "poster": str(poster),
        "plot": rows[60]["plot"],
    }


def ok(*args) -> dict:
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fails(*args) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.stderr
    return " ".join(result.stderr.split())


def test_train_then_predict_posters_and_plot(data):
    index = str(data["index"])
    out = ok("train", index, "--method", "linear", "--image-encoder", "cnn:efficientnet-lite0")
    assert out["name"] == "linear-poster" and 0 <= out["validation"]["micro_f1"] <= 1
    saved = json.loads(
        (GenreIndex.open(data["index"]).head_dir("linear-poster") / "head.json").read_text()
    )
    assert saved["encoders"]["poster"]["encoder"] == "cnn:efficientnet-lite0"
    assert len(saved["predictor"]["thresholds"]) == len(saved["genres"])
    res = ok(
        "predict",
        data["poster"],
        data["poster"],
        "--index",
        index,
        "--head",
        "linear-poster",
        "--top",
        "3",
    )
    assert len(res["results"]) == 2 and len(res["results"][0]["ranking"]) == 3
    scores = [g["score"] for g in res["results"][0]["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert res["results"][0]["ranking"] == res["results"][1]["ranking"]  # same poster twice
    ok("train", index, "--method", "mlknn", "--modality", "plot", "--k", "5")
    res = ok("predict", "--plot", data["plot"], "--index", index)  # default head: the plot one
    assert res["head"]["name"] == "mlknn-plot" and res["results"][0]["input"] == "(plot)"


def test_late_fusion_mlp_and_default_head(data):
    index = str(data["index"])
    out = ok(
        "train",
        index,
        "--method",
        "mlp",
        "--modality",
        "both",
        "--fusion",
        "late",
        "--image-encoder",
        "cnn:efficientnet-lite0",
        "--hidden",
        "32",
        "--epochs",
        "20",
    )
    assert out["name"] == "mlp-both-late" and out["fusion"] == "late"
    res = ok("predict", data["poster"], "--plot", data["plot"], "--index", index)
    assert res["head"]["modality"] == "both"  # the head that uses every input given


def test_zeroshot_with_clip_text_tower_and_refusal_for_cnn(data):
    index = str(data["index"])
    out = ok(
        "train", index, "--method", "zeroshot", "--image-encoder", data["clip"], "--name", "zs-clip"
    )
    assert out["encoders"]["poster"] == data["clip"]
    res = ok("predict", data["poster"], "--index", index, "--head", "zs-clip")
    assert res["results"][0]["genres"]  # at least one genre
    msg = fails("train", index, "--method", "zeroshot", "--image-encoder", "cnn:efficientnet-lite0")
    assert "poster__cnn-efficientnet-lite0" in msg and "(knn, mlknn, linear or mlp)" in msg
    assert msg.startswith("error: --method: ")


def test_catalog_prediction_to_csv_and_json(data, fixture_dir):
    index = str(data["index"])
    ok("train", index, "--method", "knn", "--k", "5", "--image-encoder", "cnn:efficientnet-lite0")
    catalog = str(data["tmp"] / "catalog")

    def predict_to(out):
        args = ["--catalog", catalog, "--index", index, "--head", "knn-poster", "--out", str(out)]
        return ok("predict", *args)

    out_csv = data["tmp"] / "pred.csv"
    summary = predict_to(out_csv)
    assert summary["items"] == 41 and summary["failed"] == 1  # the empty poster
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 41 and rows[0]["genres"] and ":" in rows[0]["scores"]
    broken = next(r for r in rows if r["id"] == BROKEN_ID)
    assert broken["genres"] == "" and broken["error"]
    out_json = data["tmp"] / "pred.json"
    predict_to(out_json)
    items = json.loads(out_json.read_text())["items"]
    assert len(items) == 41 and [r["id"] for r in items] == [r["id"] for r in rows]


def test_title_is_embedded_with_the_plot_as_the_index_does(data, fixture_dir):
    """A single --plot/--title prediction scores an item exactly like --catalog does for it,
    and differently from the plot alone (the title is part of the embedded text)."""
    index = str(data["index"])
    ok("train", index, "--method", "linear", "--modality", "plot", "--name", "lin-plot")
    with open(fixture_dir / "movies.csv", newline="") as f:
        row = list(csv.DictReader(f))[70]
    one = data["tmp"] / "one"
    _write_catalog(one, [row], fixture_dir)
    out = data["tmp"] / "one.json"
    ok("predict", "--catalog", str(one), "--index", index, "--head", "lin-plot", "--out", str(out))
    by_catalog = json.loads(out.read_text())["items"][0]["scores"]

    def scores(*extra):
        res = ok("predict", "--plot", row["plot"], *extra, "--index", index, "--head", "lin-plot")
        return {g["genre"]: g["score"] for g in res["results"][0]["ranking"]}

    with_title = scores("--title", row["title"])
    assert with_title.keys() == by_catalog.keys()
    for genre, score in by_catalog.items():
        assert with_title[genre] == pytest.approx(score, abs=1e-6)
    assert scores() != with_title
    msg = fails("predict", "--title", row["title"], "--index", index)
    assert "--title: A title goes with a plot" in msg


def test_unreadable_poster(data):
    bad = data["tmp"] / "notes.jpg"
    bad.write_text("not an image")
    msg = fails("predict", str(bad), "--index", str(data["index"]))
    assert "notes.jpg" in msg


def test_empty_plot(data):
    assert "plot text is empty" in fails("predict", "--plot", "  ", "--index", str(data["index"]))


def test_head_trained_on_another_vocabulary_or_encoder(data):
    index = data["index"]
    ok("train", str(index), "--method", "linear", "--modality", "plot", "--name", "p1")
    head = GenreIndex.open(index).head_dir("p1") / "head.json"
    doc = json.loads(head.read_text())
    for _field, change, expected in (
        (
            "genres",
            lambda d: d.update(genres=[f"Other-{g}" for g in d["genres"]]),
            "scores none of the",
        ),
        (
            "encoders",
            lambda d: d["encoders"]["plot"].update(encoder="st:other-model"),
            "trained on plot embeddings by st:other-model",
        ),
    ):
        changed = json.loads(json.dumps(doc))
        change(changed)
        head.write_text(json.dumps(changed))
        msg = fails("predict", "--plot", "A heist.", "--index", str(index), "--head", "p1")
        assert expected in msg and "embedgenre train" in msg
    head.write_text(json.dumps(doc))


def test_index_without_labels_allows_only_zeroshot(data, monkeypatch):
    index = str(data["nolabels"])
    msg = fails("train", index, "--method", "linear", "--modality", "plot")
    assert msg.startswith("error: --method: ") and "only the zeroshot method" in msg
    plot = "A ghost haunts a family in their new house."
    res = ok("predict", "--plot", plot, "--index", index)
    assert res["head"]["method"] == "zeroshot" and len(res["results"][0]["genres"]) >= 1
    # fitted once, saved, and loaded by the next query instead of being fitted again
    assert res["head"]["saved"] and res["head"]["name"] == "zeroshot-plot"
    again = ok("predict", "--plot", plot, "--index", index)
    assert again["head"]["name"] == "zeroshot-plot" and again["results"] == res["results"]
    assert [h.name for h in GenreIndex.open(index).heads] == ["zeroshot-plot"]
    # the saved head keeps the embedded prompts: another zero-shot head needs no text tower
    import embedgenre.heads.training as training

    def no_encoder(_):
        raise AssertionError("the prompts were embedded again")

    monkeypatch.setattr(training, "load_set_encoder", no_encoder)
    ok("train", index, "--method", "zeroshot", "--modality", "plot", "--name", "zs-again")


def test_genre_without_positive_examples_warns(data):
    result = runner.invoke(
        app,
        [
            "train",
            str(data["index"]),
            "--method",
            "linear",
            "--image-encoder",
            "cnn:efficientnet-lite0",
            "--name",
            "w",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Zombie" in result.stderr
    # said once (by the fit on all items), not again by each fold's fit
    assert result.stderr.count("No positive training examples for genre(s)") == 1


def test_k_larger_than_the_index(data):
    msg = fails("train", str(data["index"]), "--method", "knn", "--k", "500")
    idx = GenreIndex.open(data["index"])
    rows = {int(r) for r in idx.get_set("poster", "cnn:efficientnet-lite0").rows}
    labelled = sum(1 for r in rows if idx.items[r].get("genres"))
    # the labelled items of the whole index, and the part of them each fit sees
    assert msg.startswith("error: --k: k=500 neighbours is more than a fit can draw on: ")
    assert f"{labelled} labelled items with poster embeddings, of which each fit sees" in msg


def test_option_for_another_method(data):
    result = runner.invoke(app, ["train", str(data["index"]), "--method", "linear", "--k", "3"])
    assert result.exit_code != 0 and "--k does not apply to --method linear" in result.output


def test_top_limits_the_scores_shown_never_the_genres_predicted():
    from types import SimpleNamespace

    import numpy as np

    from embedgenre.predict import score_inputs

    genres = ["Action", "Comedy", "Drama", "Horror", "Romance", "War", "Western"]
    scores = np.array([[0.9, 0.2, 0.8, 0.7, 0.6, 0.65, 0.1]])
    predictor = SimpleNamespace(
        thresholds_=np.full(len(genres), 0.5),
        at_least_one_=True,
        predict_proba=lambda X: scores,
    )
    head = SimpleNamespace(
        name="h",
        modality="poster",
        encoders={"poster": {"dim": 4}},
        genres=genres,
        predictor=predictor,
    )
    (row,) = score_inputs(head, np.zeros((1, 4), np.float32), None, ["p.jpg"], top=2)
    assert row["genres"] == ["Action", "Drama", "Horror", "War", "Romance"]
    assert [r["genre"] for r in row["ranking"]] == ["Action", "Drama"]


def test_a_missing_poster_is_reported_before_any_encoder_loads(data):
    from embedgenre.errors import PosterError
    from embedgenre.predict import Predictor

    def loader(_set):
        raise AssertionError("an encoder was loaded for a poster that does not exist")

    predictor = Predictor(GenreIndex.open(data["index"]), encoder_loader=loader)
    with pytest.raises(PosterError, match=r"nope\.jpg: no such file; check the path\.$"):
        predictor.predict(posters=[str(data["tmp"] / "nope.jpg")])
    msg = fails("predict", str(data["tmp"] / "nope.jpg"), "--index", str(data["index"]))
    assert "no such file" in msg and "catalog" not in msg


def test_a_poster_as_a_path_an_image_or_bytes_gets_the_same_answer(data):
    from pathlib import Path

    from PIL import Image

    from embedgenre.predict import Predictor

    ok(
        "train",
        str(data["index"]),
        "--method",
        "linear",
        "--image-encoder",
        "cnn:efficientnet-lite0",
    )
    predictor = Predictor.open(data["index"], head="linear-poster")
    raw = Path(data["poster"]).read_bytes()
    with Image.open(data["poster"]) as img:
        result = predictor.predict(posters=[data["poster"], img.convert("RGB"), raw])
    a, b, c = ([round(g.score, 5) for g in r.ranking] for r in result.results)
    assert a == b == c
    assert [r.input for r in result.results][1:] == ["image 2", "poster 3"]


def test_a_plot_a_poster_head_cannot_use_is_named_not_dropped_in_silence(data):
    ok(
        "train",
        str(data["index"]),
        "--method",
        "linear",
        "--image-encoder",
        "cnn:efficientnet-lite0",
    )
    res = ok(
        "predict",
        data["poster"],
        "--plot",
        data["plot"],
        "--index",
        str(data["index"]),
        "--head",
        "linear-poster",
    )
    assert res["notes"] == ["head linear-poster scores posters only: the plot was not used."]
