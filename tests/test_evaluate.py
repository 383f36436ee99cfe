"""Evaluation: closed-form baselines, metrics, few-shot sampling, full runs (synthetic + CLI)."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from embedgenre.errors import BadInputError, PredictorError
from embedgenre.evaluate.data import EmbeddingView, EvalData
from embedgenre.evaluate.fewshot import parse_shots, sample_k_per_genre
from embedgenre.evaluate.metrics import mean_average_precision, summary_metrics
from embedgenre.predictors.baselines import TrivialBaseline
from embedgenre.predictors.zeroshot import prompt_matrix

# ---------------------------------------------------------------------------- closed forms

# 4 genres; training frequencies 4/5, 3/5, 1/5, 0 -> most frequent = genre 0, mean labels
# per movie = 8/5 = 1.6 -> k = 2 -> top-k = genres {0, 1}; prior > 0.5 -> genres {0, 1}.
Y_TRAIN = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
# 6 test movies, 10 positive labels out of 24 -> density 10/24.
Y_TEST = np.array(
    [[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
)


def _baseline(kind: str) -> dict:
    m = TrivialBaseline(kind).fit(np.zeros(len(Y_TRAIN)), Y_TRAIN)
    scores = m.predict_proba(Y_TEST) if m.has_scores else None
    return summary_metrics(Y_TEST, m.predict(Y_TEST), scores)


def test_predict_nothing_closed_form():
    r = _baseline("none")
    assert r["micro_f1"] == 0.0 and r["macro_f1"] == 0.0 and r["samples_f1"] == 0.0
    assert r["hamming_loss"] == pytest.approx(10 / 24)  # Hamming = label density
    assert r["label_accuracy"] == pytest.approx(14 / 24)
    assert r["subset_accuracy"] == 0.0  # every test movie has a genre
    assert math.isnan(r["map"])  # no scores, no mAP


def test_most_frequent_and_all_closed_form():
    r = _baseline("most_frequent")  # genre 0 for all 6: TP = 3, predicted 6, positives 10
    assert r["micro_f1"] == pytest.approx(2 * 3 / (6 + 10))
    # per-genre F1: genre 0 = 2*3/(6+3); others 0 -> macro = that / 4
    assert r["macro_f1"] == pytest.approx((6 / 9) / 4)
    assert r["hamming_loss"] == pytest.approx((3 + 7) / 24)  # 3 false positives + 7 misses
    r = _baseline("all")  # precision = density, recall = 1
    d = 10 / 24
    assert r["micro_f1"] == pytest.approx(2 * d / (1 + d))
    assert r["hamming_loss"] == pytest.approx(1 - d)


def test_top_k_and_prior_closed_form():
    m = TrivialBaseline("top_k").fit(np.zeros(len(Y_TRAIN)), Y_TRAIN)
    assert m.k_ == 2 and m.predict(Y_TEST[:1]).tolist() == [[1, 1, 0, 0]]
    r = _baseline("top_k")  # genres {0,1}: TP = 3 + 3 = 6, predicted 12, positives 10
    assert r["micro_f1"] == pytest.approx(2 * 6 / (12 + 10))
    assert r["hamming_loss"] == pytest.approx((6 + 4) / 24)  # 6 false positives, 4 misses
    # subset accuracy: only movie 2 is exactly {0, 1}
    assert r["subset_accuracy"] == pytest.approx(1 / 6)
    r = _baseline("prior")
    # constant scores per genre: AP of genre j = its test prevalence (all 4 genres present)
    prevalence = Y_TEST.mean(axis=0)
    assert r["map"] == pytest.approx(prevalence.mean())


def test_map_skips_genres_absent_from_test():
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    P = np.array([[0.9, 0.5], [0.1, 0.9], [0.8, 0.2]])
    assert mean_average_precision(Y, P) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        summary_metrics(Y, Y[:, :1])


def test_unknown_baseline_kind():
    with pytest.raises(PredictorError, match="Unknown trivial baseline 'median'"):
        TrivialBaseline("median").fit(np.zeros(len(Y_TRAIN)), Y_TRAIN)


# ---------------------------------------------------------------------------- few-shot


def test_sample_k_per_genre_covers_every_genre():
    rng = np.random.default_rng(3)
    Y = (rng.random((300, 8)) < np.linspace(0.6, 0.02, 8)).astype(np.uint8)
    counts = Y.sum(axis=0)
    for k in (1, 2, 4):
        rows = sample_k_per_genre(Y, k, seed=1)
        got = Y[rows].sum(axis=0)
        assert (got >= np.minimum(k, counts)).all()
        assert len(rows) <= k * Y.shape[1]  # each pick serves at least one genre's quota
        assert np.array_equal(rows, sample_k_per_genre(Y, k, seed=1))  # seeded
    assert not np.array_equal(sample_k_per_genre(Y, 4, seed=1), sample_k_per_genre(Y, 4, seed=2))
    assert len(sample_k_per_genre(Y, None)) == 300


def test_parse_shots():
    assert parse_shots("8, 1,2,all,2") == [1, 2, 8, None]
    with pytest.raises(BadInputError, match="Bad shot count 'x'"):
        parse_shots("1,x")
    with pytest.raises(BadInputError, match=">= 1"):
        parse_shots("0,1")


# ---------------------------------------------------------------------------- full runs


class _FakeTextSide:
    """Hashing "text tower" in the fake CLIP space (16-d), for zero-shot prompts."""

    name = "fake:clip"
    modalities = ("image", "text")

    def encode_texts(self, texts, batch_size=64, progress=False):
        out = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).normal(size=16) for t in texts]
        )
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def synthetic_data(tmp: Path, n: int = 120, g: int = 5, seed: int = 0) -> EvalData:
    """Labels, tiny PNG posters and two poster sets + one plot set that carry label signal."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < np.linspace(0.5, 0.1, g)).astype(np.uint8)
    Y[Y.sum(axis=1) == 0, 0] = 1
    A = rng.normal(size=(g, 16))

    def vectors(noise: float) -> np.ndarray:
        V = Y @ A + noise * rng.normal(size=(n, 16))
        return (V / np.linalg.norm(V, axis=1, keepdims=True)).astype(np.float32)

    posters = []
    for i in range(n):
        arr = np.zeros((48, 32, 3), np.uint8)
        arr[..., :3] = Y[i, :3] * 200 + 20
        path = tmp / f"p{i}.png"
        Image.fromarray(arr).save(path)
        posters.append(str(path))
    plot_rows = np.flatnonzero(rng.random(n) < 0.6)
    sets = [
        EmbeddingView("poster", "fake:clip", np.arange(n), vectors(2.0), ("image", "text"), True),
        EmbeddingView("poster", "fake:cnn", np.arange(n), vectors(1.5), ("image",)),
        EmbeddingView("plot", "fake:st", plot_rows, vectors(1.0)[plot_rows], ("text",), True),
    ]
    return EvalData(
        ids=[f"tt{i:07d}" for i in range(n)],
        genres=[f"genre{j}" for j in range(g)],
        labels=Y,
        posters=posters,
        sets=sets,
        prompts=lambda view, genres: prompt_matrix(_FakeTextSide(), genres, view.modality),
    )


def fast_config(**kw):
    from embedgenre.evaluate import EvalConfig

    base = dict(
        methods=("zeroshot", "knn", "linear"),
        shots=(2, None),
        fewshot_seeds=2,
        cnn_epochs=1,
        threshold_mode="global",
    )
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from embedgenre.evaluate import evaluate
    from embedgenre.evaluate.report import write_report

    tmp = tmp_path_factory.mktemp("evaluate")
    data = synthetic_data(tmp)
    ev = evaluate(data, fast_config())
    write_report(ev.result, tmp / "run1")
    return data, ev, tmp


def test_table_has_every_expected_row(synthetic):
    _, ev, _ = synthetic
    rows = {(r["method"], r["modality"], r["encoder"], r["subset"]) for r in ev.result["rows"]}
    expected = set()
    for subset in ("all", "with_plot"):
        for kind in ("none", "most_frequent", "top_k", "all", "prior"):
            expected.add((kind, "labels", "-", subset))
        for m in ("knn", "linear"):
            expected |= {
                (m, "poster", "fake:clip", subset),
                (m, "poster", "fake:cnn", subset),
                (m, "plot", "fake:st", subset),
                (m, "early_fusion", "fake:clip+fake:st", subset),
                (m, "late_fusion", "fake:clip+fake:st", subset),
            }
        expected |= {
            ("zeroshot", "poster", "fake:clip", subset),
            ("zeroshot", "plot", "fake:st", subset),
            ("zeroshot", "late_fusion", "fake:clip+fake:st", subset),
            ("scratch_cnn", "poster", "pixels:64x96", subset),
        }
    assert rows == expected
    skipped = {
        (s["method"], s["modality"], s["encoder"]): s["reason"] for s in ev.result["skipped"]
    }
    assert "no text side" in skipped[("zeroshot", "poster", "fake:cnn")]
    assert ("zeroshot", "early_fusion", "fake:clip+fake:st") in skipped
    # the with-plot subset really is smaller, and trained methods beat predict-nothing
    by = {(r["method"], r["modality"], r["encoder"], r["subset"]): r for r in ev.result["rows"]}
    assert (
        by[("linear", "plot", "fake:st", "with_plot")]["n_test"]
        < by[("linear", "plot", "fake:st", "all")]["n_test"]
    )
    assert (
        by[("linear", "poster", "fake:cnn", "all")]["micro_f1"]
        > by[("top_k", "labels", "-", "all")]["micro_f1"]
    )


def test_split_is_disjoint_and_thresholds_never_see_test(synthetic):
    _, ev, _ = synthetic
    split = ev.result["split"]
    train, val, test = set(split["train"]), set(split["validation"]), set(split["test"])
    assert not train & test and val <= train and len(test) == ev.result["info"]["n_test"]
    # thresholds come from out-of-fold predictions of the training part: no validation ids
    assert split["folds"] == ev.result["info"]["folds"] == 5 and not val


def test_fewshot_rows(synthetic):
    _, ev, _ = synthetic
    fs = ev.result["fewshot"]
    ks = {(r["method"], r["modality"], r["k"]) for r in fs}
    assert ("zeroshot", "poster", 0) in ks and ("knn", "plot", 2) in ks
    assert ("linear", "poster", "all") in ks
    assert (
        len([r for r in fs if r["method"] == "knn" and r["modality"] == "poster" and r["k"] == 2])
        == 2
    )  # one per seed


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_seeded_run_is_reproducible_bit_for_bit(synthetic):
    from embedgenre.evaluate import evaluate
    from embedgenre.evaluate.report import write_report

    data, _, tmp = synthetic
    write_report(evaluate(data, fast_config()).result, tmp / "run2")
    assert (tmp / "run1" / "results.json").read_bytes() == (
        tmp / "run2" / "results.json"
    ).read_bytes()


def test_split_file_is_honoured(synthetic):
    from embedgenre.evaluate import evaluate
    from embedgenre.evaluate.split import read_split

    data, ev, tmp = synthetic
    doc = read_split(tmp / "run1" / "split.json")
    doc["test"], doc["train"] = doc["test"][:-3], doc["train"] + doc["test"][-3:]
    again = evaluate(data, fast_config(split=doc, shots=(), scratch_cnn=False, methods=("linear",)))
    assert again.result["split"]["test"] == doc["test"]
    val = doc["train"][::5]  # a given validation part replaces the out-of-fold thresholds
    held = evaluate(
        data,
        fast_config(
            split=dict(doc, validation=val), shots=(), scratch_cnn=False, methods=("linear",)
        ),
    )
    assert held.result["info"]["folds"] is None and held.result["info"]["n_val"] == len(val)
    assert held.result["split"]["validation"] == sorted(val, key=data.ids.index)
    bad = dict(doc, test=doc["test"] + ["tt9999999"])
    from embedgenre.errors import EmbedgenreError

    with pytest.raises(EmbedgenreError, match="does not hold"):
        evaluate(data, fast_config(split=bad, shots=(), scratch_cnn=False))


def test_report_files_and_figures(synthetic):
    from embedgenre.evaluate import make_plots

    data, ev, tmp = synthetic
    paths = make_plots(ev, tmp / "run1")
    for name in ("per_genre_f1", "pr_curves", "cooccurrence", "fewshot"):
        assert paths[name].stat().st_size > 10_000
        assert paths[name].read_bytes()[:4] == b"\x89PNG"
    summary = (tmp / "run1" / "summary.md").read_text()
    assert "Per-label accuracy alone misleads" in summary and "## Skipped" in summary
    csv_lines = (tmp / "run1" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(ev.result["rows"])
    doc = json.loads((tmp / "run1" / "results.json").read_text())
    assert doc["rows"][0].keys() >= {"micro_f1", "map", "label_accuracy", "subset_accuracy"}


def test_bad_config_is_refused(synthetic):
    from embedgenre.errors import EmbedgenreError
    from embedgenre.evaluate import evaluate

    data, _, _ = synthetic
    with pytest.raises(EmbedgenreError, match="unknown method.*svm.*choose from"):
        evaluate(data, fast_config(methods=("svm",)))
    with pytest.raises(EmbedgenreError, match="image encoder.*clip:nope.*fake:clip"):
        evaluate(data, fast_config(image_encoders=("clip:nope",)))
    with pytest.raises(EmbedgenreError, match="text encoder.*st:nope.*fake:st"):
        evaluate(data, fast_config(text_encoders=("st:nope",)))


def test_text_encoder_picks_the_plot_set(synthetic, tmp_path):
    """With two plot sets, both get plot rows unless one is named; fusion uses the default plot
    set, or the one named."""
    from dataclasses import replace

    from embedgenre.evaluate import evaluate

    data, _, _ = synthetic
    plot = next(v for v in data.sets if v.modality == "plot")
    other = replace(plot, encoder="fake:st2", vectors=plot.vectors[:, ::-1].copy(), default=False)
    two = replace(data, sets=[*data.sets, other])
    cfg = dict(methods=("linear",), modalities=("plot", "early_fusion"), shots=())
    picked = evaluate(two, fast_config(text_encoders=("fake:st2",), **cfg)).result["rows"]
    every = evaluate(two, fast_config(**cfg)).result["rows"]

    def encoders(rows, modality):
        return {r["encoder"] for r in rows if r["modality"] == modality}

    assert encoders(picked, "plot") == {"fake:st2"}
    assert encoders(picked, "early_fusion") == {"fake:clip+fake:st2"}
    assert encoders(every, "plot") == {"fake:st", "fake:st2"}
    assert encoders(every, "early_fusion") == {"fake:clip+fake:st"}


# ---------------------------------------------------------------------------- CLI on the fixture


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_cli_on_fixture_index(fixture_index_dir, tmp_path):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    report = tmp_path / "report"
    args = [
        "evaluate",
        str(fixture_index_dir),
        "--methods",
        "linear",
        "--shots",
        "2,all",
        "--fewshot-seeds",
        "1",
        "--cnn-epochs",
        "1",
        "--thresholds",
        "global",
        "--report",
        str(report),
    ]
    res = CliRunner().invoke(app, args + ["--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{") :])
    assert doc["info"]["n_items"] == 110 and 20 <= doc["info"]["n_test"] <= 24
    rows = {(r["method"], r["modality"], r["subset"]) for r in doc["rows"]}
    for m in ("linear",):
        for mod in ("poster", "plot", "early_fusion", "late_fusion"):
            assert (m, mod, "all") in rows
    assert ("scratch_cnn", "poster", "all") in rows and ("none", "labels", "all") in rows
    reasons = " ".join(s["reason"] for s in doc["skipped"])
    assert doc["skipped"] == [] or "text side" in reasons
    for name in (
        "results.json",
        "results.csv",
        "summary.md",
        "per_genre.md",
        "split.json",
        "per_genre_f1.png",
        "pr_curves.png",
        "cooccurrence.png",
        "fewshot.png",
    ):
        assert (report / name).exists(), name
    # the saved split is accepted back
    res = CliRunner().invoke(
        app,
        args[:2]
        + [
            "--methods",
            "linear",
            "--modalities",
            "plot",
            "--shots",
            "none",
            "--no-scratch-cnn",
            "--split",
            str(report / "split.json"),
            "--report",
            str(tmp_path / "r2"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "micro-F1" in res.stdout
    assert (
        json.loads((tmp_path / "r2" / "split.json").read_text())["test"]
        == json.loads((report / "split.json").read_text())["test"]
    )


def test_cli_bad_input(fixture_index_dir, tmp_path):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    res = CliRunner().invoke(app, ["evaluate", str(fixture_index_dir), "--methods", "svm"])
    assert res.exit_code == 1 and "unknown method(s) svm" in res.output
    bad = tmp_path / "split.json"
    bad.write_text('{"train": []}')
    res = CliRunner().invoke(app, ["evaluate", str(fixture_index_dir), "--split", str(bad)])
    assert res.exit_code == 1 and "'train' and 'test'" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "no index at" in res.output


def test_late_fusion_heldout_scores_cover_every_training_item():
    """Thresholds of late fusion are chosen on every held-out item, each scored with what it has:
    the fused scores where both heads scored it, else the poster head alone."""
    from embedgenre.predictors import TunedThresholds, make_predictor

    rng = np.random.default_rng(0)
    Y = (rng.random((120, 3)) < 0.4).astype(np.uint8)
    X = rng.standard_normal((120, 12)).astype(np.float32) + Y.repeat(4, axis=1)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[::3, 6:] = 0  # a third of the items have no plot
    tuned = TunedThresholds(make_predictor("linear", fusion="late", dims=(6, 6)), cv=3)
    tuned.fit(X, Y)
    rows, P = tuned.heldout_
    assert rows.tolist() == list(range(120)) and P.shape == Y.shape
    w = tuned.chosen_["weight"]
    assert tuned.estimator_.weight_ == w and 0.0 <= w <= 1.0


def test_make_split_reads_documents_and_draws_splits():
    from embedgenre.errors import EmbedgenreError
    from embedgenre.evaluate.split import make_split

    rng = np.random.default_rng(0)
    Y = (rng.random((60, 4)) < 0.4).astype(np.uint8)
    ids = [f"tt{i:07d}" for i in range(60)]
    universe = np.arange(50, dtype=np.int64)  # the last 10 items lack what the run needs
    drawn = make_split(ids, Y, universe, test_size=0.2, seed=3, folds=None, val_size=0.25)
    assert np.intersect1d(drawn.train, drawn.test).size == 0
    assert np.union1d(drawn.train, drawn.test).tolist() == universe.tolist()
    assert np.isin(drawn.val, drawn.train).all() and len(drawn.val) > 0  # carved: no folds
    assert drawn.doc["folds"] is None and drawn.doc["test"] == [ids[i] for i in drawn.test]
    again = make_split(ids, Y, universe, test_size=0.2, seed=3, folds=None, val_size=0.25)
    assert again.doc == drawn.doc
    with_folds = make_split(ids, Y, universe, seed=3, folds=5)
    assert with_folds.val is None and with_folds.doc["folds"] == 5

    doc = {"train": ids[:40] + ids[55:], "test": ids[40:50]}
    read = make_split(ids, Y, universe, document=doc, folds=5)
    assert read.train.tolist() == list(range(40))  # ids outside the universe are left out
    assert read.test.tolist() == list(range(40, 50)) and read.doc["test_size"] is None
    with pytest.raises(EmbedgenreError, match="both 'train' and 'test'"):
        make_split(ids, Y, universe, document={"train": ids[:41], "test": ids[40:50]})
    with pytest.raises(EmbedgenreError, match="must be part of 'train'"):
        make_split(ids, Y, universe, document=dict(doc, validation=ids[45:47]))


def test_progress_counts_every_fit_against_a_total_known_up_front(synthetic):
    from embedgenre.evaluate import EvalConfig, evaluate

    data, _, _ = synthetic
    calls = []
    cfg = fast_config(shots=(), methods=("knn", "linear"))
    evaluate(data, cfg, progress=lambda done, total, what: calls.append((done, total, what)))
    fits = calls[:-1]
    assert fits and calls[-1][2] == "done"
    # the total is the planned number of fits from the first call on, and each fit counts once
    assert {total for _, total, _ in calls} == {len(fits)}
    assert [done for done, _, _ in fits] == list(range(len(fits)))
    assert calls[-1][0] == calls[-1][1] == len(fits)
    # few-shot curves are asked for, not made by default
    assert EvalConfig().shots == ()


@pytest.mark.parametrize("command", [["evaluate"], ["similar"], []])
def test_help_shows_every_value_and_no_placeholder_for_flags(command):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "…" not in result.output
    if command == ["evaluate"]:
        for value in ("zeroshot", "mlp", "early_fusion", "late_fusion"):
            assert value in result.output
