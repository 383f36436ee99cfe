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


def _planted_source(n=400, d=24, seed=3):
    """Random unit vectors over item rows 0..n+9 (rows 0-9 have none), with planted copies:
    2 of 1 exact, 3 of 1 close (cosine ~0.97), 4 of 5 close, a chain 6 ~ 7 ~ 8, and 9 a
    neighbour of 1 (cosine ~0.8) but no copy."""
    import numpy as np

    from embedgenre.retrieval import Source

    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d))

    def near(i, eps):
        return v[i] + eps * np.linalg.norm(v[i]) * rng.normal(size=d) / np.sqrt(d)

    v[2] = v[1]
    v[3] = near(1, 0.25)
    v[4] = near(5, 0.25)
    v[7] = near(6, 0.2)
    v[8] = near(7, 0.2)
    v[9] = near(1, 0.7)  # close to 1, not a copy: 1's copies fold into 1 in its answer
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    rows = np.arange(10, n + 10)

    def search(queries, k):
        s = queries.astype(np.float32) @ v.T
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, top, axis=1), rows[top]

    return Source(name="poster", rows=rows, vectors=v, search=search, query=None), n + 10


@pytest.mark.parametrize("with_dedup", [True, False])
@pytest.mark.parametrize("k", [1, 10])
def test_batched_rank_gives_what_rank_gives(with_dedup, k):
    """The batched ranking of every item answers as rank() does, one query at a time: the query
    left out of its own answer (and, folding by poster, its copies under other ids), copies among
    the candidates folded into the first of them."""
    import numpy as np

    from embedgenre.retrieval import rank, rank_all_exact

    src, n_items = _planted_source()
    queries = src.rows.copy()
    dedup = src if with_dedup else None
    got, slow = rank_all_exact(src, queries, n_items, k, dedup=dedup, batch_size=64)
    folded = 0
    for row, hits in zip(queries.tolist(), got, strict=True):
        at = row - 10
        one = type(src)(
            name=src.name,
            rows=src.rows,
            vectors=src.vectors,
            search=src.search,
            query=src.vectors[at],
        )
        want = rank([one], n_items, k, exclude=[row], dedup=one if with_dedup else None)
        assert [(h.row, h.score, h.cosines, h.duplicates) for h in hits] == [
            (h.row, h.score, h.cosines, h.duplicates) for h in want
        ], row
        assert row not in [h.row for h in hits]
        folded += sum(len(h.duplicates) for h in hits)
    # the fast walk answered most queries, rank() the ones near a planted copy
    assert 0 < slow < len(queries) // 4 if with_dedup else slow == 0
    copies = {11, 12, 13, 14, 15, 16, 17, 18}  # rows of items 1-8 above
    by_row = dict(zip(queries.tolist(), got, strict=True))
    if with_dedup:
        assert folded > 0 if k > 1 else folded == 0
        assert k == 1 or (by_row[19][0].row == 11 and set(by_row[19][0].duplicates) == {12, 13})
        # the exact copy and the close copy of item 1 are the query itself, never its neighbours
        assert not {12, 13} & {h.row for h in by_row[11]}
        assert not {11, 13} & {h.row for h in by_row[12]}
    else:
        assert folded == 0
        assert by_row[11][0].row == 12 and by_row[11][0].score == pytest.approx(1.0, abs=1e-6)
    assert np.isin(list(copies), queries).all()
