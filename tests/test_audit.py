"""Label audit: per-genre confident-learning thresholds on held-out scores, the audit of an index,
and `embedgenre audit`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from embedgenre.audit import audit, class_thresholds, issue_evidence, label_quality
from embedgenre.cli.app import app
from embedgenre.errors import PredictorError
from embedgenre.heads import train_head
from embedgenre.heads.training import heldout_scores
from embedgenre.predictors import HeadSpec
from embedgenre.store import GenreIndex

runner = CliRunner()


def test_class_thresholds_are_each_sides_mean_score():
    rng = np.random.default_rng(0)
    P = rng.random((40, 3))
    Y = rng.random((40, 3)) < 0.4
    Y[:, 2] = False  # a genre nobody has: no members, so no member threshold
    member, other = class_thresholds(P, Y)
    for g in range(2):
        assert member[g] == pytest.approx(np.mean([P[i, g] for i in range(40) if Y[i, g]]))
        assert other[g] == pytest.approx(np.mean([P[i, g] for i in range(40) if not Y[i, g]]))
    assert np.isnan(member[2]) and other[2] == pytest.approx(P[:, 2].mean())


def test_each_genre_is_judged_on_its_own_scale():
    """A common genre scores high and a rare one low: 0.15 is a weak score for the common genre
    (its label looks wrong) and a strong one for the rare genre (its absence looks wrong)."""
    n = 100
    Y = np.zeros((n, 2), dtype=bool)
    Y[:60, 0] = True  # common: members ~0.8, others ~0.3
    Y[:10, 1] = True  # rare: members ~0.12, others ~0.02
    P = np.where(Y, [0.8, 0.12], [0.3, 0.02])
    P[5, 0] = 0.15  # labelled common, scored below the others' mean: wrong
    P[50, 1] = 0.15  # not labelled rare, scored above the members' mean: missing
    P[6, 1] = 0.10  # labelled rare at 0.10: low in absolute terms, typical for the genre
    wrong, missing, evidence = issue_evidence(P, Y)
    assert wrong[5, 0] > 0 and missing[50, 1] > 0
    assert wrong[6, 1] == 0 and missing[6].sum() == 0
    flagged = set(np.flatnonzero(evidence > 0).tolist())
    assert {5, 50} <= flagged and 6 not in flagged


def test_planted_wrong_labels_rank_first_on_heldout_scores():
    """Separable synthetic embeddings; 6 of 120 rows get a label set sharing nothing with their
    own. The held-out scores of the fit `train` makes put those rows at the top."""
    rng = np.random.default_rng(1)
    n, g, d = 120, 4, 16
    centers = rng.normal(size=(g, d)) * 3
    Y = np.zeros((n, g), dtype=bool)
    Y[np.arange(n), np.arange(n) % g] = True
    X = (Y.astype(float) @ centers + rng.normal(size=(n, d))).astype(np.float32)
    planted = rng.choice(n, 6, replace=False)
    noisy = Y.copy()
    for i in planted:
        noisy[i] = np.roll(Y[i], 1 + i % (g - 1))  # another single genre
    tuned = HeadSpec("linear", folds=4).fit(X, noisy, [f"g{j}" for j in range(g)], refit=False)
    rows, P = tuned.heldout_
    assert list(rows) == list(range(n))  # every row scored once, by a model that did not see it
    _, _, evidence = issue_evidence(P, noisy[rows])
    quality = label_quality(P, noisy[rows])
    top = np.argsort(quality, kind="stable")[: len(planted)]
    assert set(top.tolist()) == set(planted.tolist())
    assert (evidence[planted] > 0).all()


def test_label_quality_weighs_the_worst_genres_most():
    P = np.array([[0.9, 0.1, 0.1], [0.9, 0.1, 0.1], [0.6, 0.4, 0.1]])
    Y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=bool)
    q = label_quality(P, Y, alpha=0.5)
    # row 0: confidences 0.9, 0.9, 0.9; row 1: 0.9, 0.1 (labelled), 0.1 (the 0.9 not labelled)
    assert q[0] == pytest.approx(0.9)
    assert q[1] == pytest.approx(0.5 * 0.1 + 0.5 * (0.5 * 0.9 + 0.5 * 0.1))
    assert q[1] < q[2] < q[0]


@pytest.fixture(scope="module")
def trained_index(fixture_index_dir, tmp_path_factory):
    """A copy of the fixture index with a saved linear poster head (3 folds)."""
    path = tmp_path_factory.mktemp("audit") / "index"
    shutil.copytree(fixture_index_dir, path)
    train_head(GenreIndex.open(path), HeadSpec("linear", "poster", folds=3), name="lin3")
    return path


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_heldout_scores_cover_every_labelled_item(trained_index):
    index = GenreIndex.open(trained_index)
    rows, P, Y, genres, predicted = heldout_scores(index, HeadSpec("linear", "poster", folds=3))
    labelled = np.flatnonzero(index.labels.sum(axis=1) > 0)
    assert sorted(rows.tolist()) == labelled.tolist()
    assert P.shape == Y.shape == predicted.shape == (len(labelled), len(index.genres))
    assert (Y == index.labels[rows].astype(bool)).all() and genres == index.genres
    other = index.labels.copy()
    other[:, :] = 0
    other[:, 0] = 1
    with pytest.raises(PredictorError, match="one row per item"):
        heldout_scores(index, HeadSpec("linear"), labels=other[:5])


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_audit_uses_the_named_heads_spec_and_lists_worst_labels_first(trained_index):
    index = GenreIndex.open(trained_index)
    result = audit(index, head="lin3", k=5, neighbours=5)
    assert result.head["name"] == "lin3" and result.head["folds"] == 3
    assert len(result.findings) == 5 and result.n_flagged >= 5
    quality = [f.quality for f in result.findings]
    assert quality == sorted(quality) and all(f.evidence > 0 for f in result.findings)
    for f in result.findings:
        assert f.issues
        for issue in f.issues:
            assert (issue.genre in f.labelled) == (issue.kind == "wrong")
            backing = [n for n in f.neighbours if issue.genre in n["supports"]]
            assert issue.neighbours == len(backing) <= 5
            for n in backing:
                assert (issue.genre in n["genres"]) == (issue.kind == "missing")


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_audit_cli_json_html_and_errors(trained_index, tmp_path):
    page = tmp_path / "audit.html"
    res = runner.invoke(
        app, ["audit", str(trained_index), "-k", "3", "--json", "--html", str(page)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [f["rank"] for f in doc["findings"]] == [1, 2, 3]
    assert doc["head"]["name"] == "lin3"  # the only saved head
    text = page.read_text()
    for f in doc["findings"]:
        assert f'data-id="{f["id"]}"' in text
    res = runner.invoke(app, ["audit", str(trained_index), "--head", "nope"])
    assert res.exit_code == 1
    assert "No head named 'nope'" in res.output and "lin3" in res.output
    res = runner.invoke(app, ["audit", str(trained_index), "-k", "2", "--neighbours", "0"])
    assert res.exit_code == 0, res.output
    assert "judged by linear-poster (head lin3)" in res.output
