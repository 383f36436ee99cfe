"""One path from training to evaluation to prediction: a row of ``embedgenre evaluate`` scores
exactly the head ``embedgenre train`` saves for that split, as ``predict --catalog`` answers.

For each method x modality on the fixture index: evaluate once, then train a head on the
report's split.json (its training ids), predict the split's test items through the shipped
``predict --catalog`` path (posters and plots encoded again from the files, as a user's would
be) and score those predictions: they equal the evaluate row to 1e-9. The few-shot curve's
``k = all`` point is the main row itself.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from _catalogs import FIELDS, make_catalog
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.evaluate import EvalConfig, evaluate_index
from embedgenre.evaluate.metrics import summary_metrics

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

METHODS = ("knn", "mlknn", "linear", "mlp")
FOLDS = "3"  # fewer fits than the default 5: the same protocol, a faster test
# evaluate row -> train options, and the test subset a head of that row scores every item of
ROWS = {
    "poster": (["--modality", "poster"], "all"),
    "plot": (["--modality", "plot"], "with_plot"),
    "early_fusion": (["--modality", "both", "--fusion", "early"], "all"),
    "late_fusion": (["--modality", "both", "--fusion", "late"], "all"),
}


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def evaluated(fixture_index_dir, fixture_dir, tmp_path_factory):
    """(index copy, evaluation, test catalog, genres): the fixture index evaluated once, and the
    split's test movies as a catalog of their own (posters copied from the fixture)."""
    tmp = tmp_path_factory.mktemp("one-path")
    index = tmp / "index"
    shutil.copytree(fixture_index_dir, index)
    config = EvalConfig(
        methods=METHODS, shots=(4, None), fewshot_seeds=1, scratch_cnn=False, folds=int(FOLDS)
    )
    ev = evaluate_index(index, config, report_dir=tmp / "report")
    test_ids = set(ev.result["split"]["test"])
    with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["imdb_id"] in test_ids]
    catalog = tmp / "test-catalog"
    (catalog / "posters").mkdir(parents=True)
    for r in rows:
        shutil.copy(fixture_dir / r["poster"], catalog / r["poster"])
    make_catalog(catalog, [{k: r[k] for k in FIELDS} for r in rows])
    return index, ev, catalog, tmp / "report" / "split.json"


def _row(ev, method: str, modality: str, subset: str) -> dict:
    """The report row; "with_plot" is reported only when some test items lack a plot (else
    the "all" row scores the same items)."""
    if subset == "with_plot" and not any(r["subset"] == subset for r in ev.result["rows"]):
        subset = "all"
    found = [
        r
        for r in ev.result["rows"]
        if (r["method"], r["modality"], r["subset"]) == (method, modality, subset)
    ]
    assert len(found) == 1, (method, modality, subset, ev.result["skipped"])
    return found[0]


@pytest.mark.parametrize("modality", list(ROWS))
@pytest.mark.parametrize("method", METHODS)
def test_evaluate_row_equals_the_trained_head_predicting_the_test_items(
    evaluated, method, modality, tmp_path
):
    index, ev, catalog, split = evaluated
    options, subset = ROWS[modality]
    name = f"{method}-{modality}"
    _invoke(
        "train", str(index), "--method", method, *options, "--split", str(split), "--name", name,
        "--folds", FOLDS,
    )  # fmt: skip
    out = tmp_path / "predictions.json"
    _invoke(
        "predict",
        "--index",
        str(index),
        "--head",
        name,
        "--catalog",
        str(catalog),
        "--top",
        "1000",
        "--out",
        str(out),
    )
    doc = json.loads(out.read_text())
    genres = ev.result["info"]["genres"]
    ids = list(ev.result["split"]["test"])
    position = {item_id: p for p, item_id in enumerate(_index_ids(index))}
    rows = [r for r in doc["items"] if r["error"] is None]
    if subset == "all":
        assert len(rows) == len(ids)  # every test item scored
    Y = np.array([ev.labels[position[r["id"]]] for r in rows])
    P = np.array([[r["scores"][g] for g in genres] for r in rows], dtype=np.float64)
    D = np.array([[g in r["genres"] for g in genres] for r in rows], dtype=np.uint8)
    got = summary_metrics(Y, D, P)
    want = _row(ev, method, modality, subset)
    assert want["n_test"] == len(rows)
    for metric in ("micro_f1", "macro_f1", "samples_f1", "map"):
        assert got[metric] == pytest.approx(want[metric], abs=1e-9), metric


def _index_ids(index) -> list[str]:
    from embedgenre.store import GenreIndex

    return list(GenreIndex.open(index).ids)


@pytest.mark.parametrize("modality, subset", [("poster", "all"), ("plot", "with_plot")])
def test_fewshot_k_all_is_the_main_row(evaluated, modality, subset):
    _, ev, _, _ = evaluated
    points = [p for p in ev.result["fewshot"] if p["modality"] == modality and p["k"] == "all"]
    assert {p["method"] for p in points} == set(METHODS)
    for p in points:
        row = _row(ev, p["method"], modality, subset)
        for metric in ("micro_f1", "macro_f1", "map"):
            assert p[metric] == pytest.approx(row[metric], abs=1e-12), (p["method"], metric)
    small = [p for p in ev.result["fewshot"] if p["modality"] == modality and p["k"] == 4]
    assert small and all(p["n_train"] < points[0]["n_train"] for p in small)
