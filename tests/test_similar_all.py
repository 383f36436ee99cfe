"""`similar --all`: every movie's neighbours in one batched pass, the same as asking one at a time."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.retrieval import open_retriever

runner = CliRunner()


def _one_at_a_time(index_dir, k, by, **filters):
    r = open_retriever(index_dir, thumbnails=False)
    out = {}
    for item_id in r.index.ids:
        res = r.similar(item_id=item_id, k=k, by=by, **filters)
        out[item_id] = [(n.id, n.score) for n in res.neighbours]
    return out


def _read(path):
    got = {}
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            records = list(csv.DictReader(f))
    else:
        records = json.loads(path.read_text())["neighbours"]
    for rec in records:
        got.setdefault(rec["id"], []).append((int(rec["rank"]), rec["neighbour_id"], rec["score"]))
    return {i: sorted(v) for i, v in got.items()}


@pytest.mark.parametrize(
    "by, args, filters, suffix",
    [
        ("poster", [], {}, ".csv"),
        ("both", ["-x", "Drama"], {"exclude_genres": ["Drama"]}, ".json"),
        ("plot", ["-g", "Comedy", "-g", "Action"], {"genres": ["Comedy", "Action"]}, ".csv"),
    ],
)
def test_all_gives_the_neighbours_of_one_at_a_time(
    fixture_index_dir, tmp_path, by, args, filters, suffix
):
    out = tmp_path / f"recs{suffix}"
    res = runner.invoke(
        app,
        ["similar", "--all", "-k", "7", "--by", by, "--index", str(fixture_index_dir)]
        + args
        + ["--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    got = _read(out)
    want = _one_at_a_time(fixture_index_dir, 7, by, **filters)
    assert set(got) == set(want)
    for item_id, neighbours in want.items():
        assert [n for _, n, _ in got[item_id]] == [n for n, _ in neighbours], item_id
        assert [r for r, _, _ in got[item_id]] == list(range(1, len(neighbours) + 1))
        for (_, _, score), (_, exact) in zip(got[item_id], neighbours, strict=True):
            assert float(score) == pytest.approx(exact, abs=1e-5)


def test_all_refuses_what_it_cannot_do(fixture_index_dir, tmp_path):
    base = ["similar", "--index", str(fixture_index_dir)]
    res = runner.invoke(app, [*base, "--all"])
    assert res.exit_code == 1 and "--all needs --out FILE" in res.output
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r.csv")])
    assert res.exit_code == 1 and "--out goes with --all" in res.output
    res = runner.invoke(
        app, [*base, "--all", "--id", "tt0311429", "--out", str(tmp_path / "r.csv")]
    )
    assert res.exit_code == 1 and "drop the poster and --id" in res.output
    res = runner.invoke(app, [*base, "--all", "--out", str(tmp_path)])
    assert res.exit_code != 0 and not (tmp_path / "recs.csv").exists()
