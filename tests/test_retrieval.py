"""Retrieval ranking on seeded synthetic vectors, checked against a brute-force numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import synthetic_vectors

from embedgenre import ann
from embedgenre.retrieval import (
    DEFAULT_DEDUP_THRESHOLD,
    RetrievalError,
    Source,
    pair_statistics,
    rank,
)

N_ITEMS = 600


def _flat_search(rows, vectors):
    index, _ = ann.build_faiss_index(vectors, "flat")

    def search(queries, k):
        scores, pos = ann.search(index, queries, k)
        return scores, np.where(pos >= 0, rows[np.clip(pos, 0, None)], -1)

    return search


@pytest.fixture(scope="module")
def world():
    """Posters for all but 20 items (with 30 near-copies of other posters), plots for 60%."""
    rng = np.random.default_rng(7)
    poster = synthetic_vectors(N_ITEMS, 48, n_clusters=40, seed=11)
    for src, dst in zip(rng.choice(300, 30, replace=False), range(300, 330)):
        noisy = poster[src] + 0.002 * rng.standard_normal(48).astype(np.float32)
        poster[dst] = noisy / np.linalg.norm(noisy)
    plot = synthetic_vectors(N_ITEMS, 24, n_clusters=30, seed=12)
    poster_rows = np.sort(rng.choice(N_ITEMS, N_ITEMS - 20, replace=False))
    plot_rows = np.sort(rng.choice(N_ITEMS, int(0.6 * N_ITEMS), replace=False))
    genres = rng.random((N_ITEMS, 5)) < [0.5, 0.3, 0.1, 0.05, 0.02]
    return {
        "poster": (poster_rows, poster[poster_rows]),
        "plot": (plot_rows, plot[plot_rows]),
        "genres": genres,
        # cosine mean / std of random pairs, as the retriever computes them
        "stats": {
            "poster": pair_statistics(poster[poster_rows]),
            "plot": pair_statistics(plot[plot_rows]),
        },
    }


def source(world, name, query, weight=1.0):
    rows, vectors = world[name]
    mean, std = world["stats"][name]
    return Source(name, rows, vectors, _flat_search(rows, vectors), query, weight, mean, std)


def reference(world, queries, weights, k, keep=None, exclude=(), threshold=DEFAULT_DEDUP_THRESHOLD):
    """Score every item in every active modality with numpy, then walk best first."""
    active = [m for m in queries if weights[m] > 0]
    full = {}
    for m in active:
        rows, vectors = world[m]
        c = np.full(N_ITEMS, np.nan)
        c[rows] = vectors.astype(np.float64) @ queries[m]
        full[m] = c
    if len(active) == 1:
        score = full[active[0]]
    else:
        num, den2 = np.zeros(N_ITEMS), np.zeros(N_ITEMS)
        for m in active:
            mean, std = world["stats"][m]
            has = ~np.isnan(full[m])
            num[has] += weights[m] * (full[m][has] - mean) / std
            den2[has] += weights[m] ** 2
        score = np.where(den2 > 0, num / np.sqrt(np.where(den2 > 0, den2, 1)), np.nan)
    prow, pvec = world["poster"]
    pvec_of = {int(r): pvec[i].astype(np.float64) for i, r in enumerate(prow)}
    qp = queries.get("poster")
    out, kept = [], []
    for row in sorted(np.flatnonzero(~np.isnan(score)), key=lambda r: (-score[r], r)):
        if row in exclude or (keep is not None and not keep[row]):
            continue
        v = pvec_of.get(int(row))
        if v is not None:
            if qp is not None and v @ qp >= threshold:
                continue
            if any(v @ kv >= threshold for kv in kept):
                continue
            kept.append(v)
        out.append((int(row), float(score[row])))
        if len(out) == k:
            break
    return out


def run(world, queries, weights, k, **kw):
    sources = [source(world, m, q, weights[m]) for m, q in queries.items()]
    dedup_query = queries.get("poster")
    dedup = source(world, "poster", dedup_query)
    hits = rank(sources, N_ITEMS, k, dedup=dedup, **kw)
    return hits, [(h.row, h.score) for h in hits]


def assert_same(got, want):
    assert [r for r, _ in got] == [r for r, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def item_query(world, name, row):
    rows, vectors = world[name]
    return vectors[np.flatnonzero(rows == row)[0]].astype(np.float64)


@pytest.mark.parametrize("qrow", [0, 17, 305])
def test_poster_neighbours_match_brute_force_and_skip_self(world, qrow):
    q = {"poster": item_query(world, "poster", world["poster"][0][qrow])}
    me = int(world["poster"][0][qrow])
    _, got = run(world, q, {"poster": 1.0}, 10, exclude=[me])
    assert_same(got, reference(world, q, {"poster": 1.0}, 10, exclude=[me]))
    assert me not in [r for r, _ in got] and len(got) == 10


def test_near_duplicates_of_results_are_folded_in(world):
    # item 300 + i is a near-copy of some item below 300: query by one of the originals' neighbours
    rows, vectors = world["poster"]
    copy_row = next(r for r in range(300, 330) if r in set(rows.tolist()))
    original = int(
        np.argmax(vectors[: np.searchsorted(rows, 300)] @ item_query(world, "poster", copy_row))
    )
    original_row = int(rows[original])
    # a query near the pair, but not a copy of either
    rng = np.random.default_rng(0)
    q = item_query(world, "poster", copy_row) + 0.3 * rng.standard_normal(48)
    q /= np.linalg.norm(q)
    hits, got = run(world, {"poster": q}, {"poster": 1.0}, 10)
    assert_same(got, reference(world, {"poster": q}, {"poster": 1.0}, 10))
    shown = [h.row for h in hits]
    assert (original_row in shown) != (copy_row in shown)  # exactly one of the pair is shown
    folded = [d for h in hits for d in h.duplicates]
    assert {original_row, copy_row} - set(shown) <= set(folded)


def test_copies_of_the_query_poster_are_left_out(world):
    rows, _ = world["poster"]
    copy_row = next(r for r in range(300, 330) if r in set(rows.tolist()))
    q = item_query(world, "poster", copy_row)
    hits, _ = run(world, {"poster": q}, {"poster": 1.0}, 10, exclude=[copy_row])
    assert all(h.cosines["poster"] < DEFAULT_DEDUP_THRESHOLD for h in hits)


def test_genre_filters_still_give_k_results(world):
    genres = world["genres"]
    keep = genres[:, 3] & ~genres[:, 0]  # a rare genre, minus a common one: ~2.5% of items
    assert 10 <= keep.sum() < 40
    q = {"poster": item_query(world, "poster", world["poster"][0][5])}
    hits, got = run(world, q, {"poster": 1.0}, 10, keep=keep)
    assert len(hits) == 10 and all(keep[h.row] for h in hits)
    assert_same(got, reference(world, q, {"poster": 1.0}, 10, keep=keep))


def test_fewer_matches_than_k_returns_what_exists(world):
    keep = np.zeros(N_ITEMS, dtype=bool)
    keep[[3, 50, 51]] = True
    q = {"poster": item_query(world, "poster", world["poster"][0][9])}
    hits, got = run(world, q, {"poster": 1.0}, 10, keep=keep)
    expected = reference(world, q, {"poster": 1.0}, 10, keep=keep)
    assert_same(got, expected)
    assert 1 <= len(hits) <= 3 and all(h.row >= 0 and np.isfinite(h.score) for h in hits)


@pytest.mark.parametrize("plot_weight", [0.5, 0.8])
def test_both_is_a_weighted_stouffer_score_of_standardised_cosines(world, plot_weight):
    both_rows = np.intersect1d(world["poster"][0], world["plot"][0])
    row = int(both_rows[4])
    q = {"poster": item_query(world, "poster", row), "plot": item_query(world, "plot", row)}
    w = {"poster": 1 - plot_weight, "plot": plot_weight}
    hits, got = run(world, q, w, 10, exclude=[row])
    assert_same(got, reference(world, q, w, 10, exclude=[row]))
    # items lacking a plot are in the running with their poster score
    has_plot = set(world["plot"][0].tolist())
    _, wide = run(world, q, w, 200, exclude=[row])
    assert any(r not in has_plot for r, _ in wide)
    for h in hits:
        if h.cosines["plot"] is not None and h.cosines["poster"] is not None:
            mp, sp = world["stats"]["poster"]
            mt, st = world["stats"]["plot"]
            expect = (
                w["poster"] * (h.cosines["poster"] - mp) / sp
                + w["plot"] * (h.cosines["plot"] - mt) / st
            ) / np.hypot(w["poster"], w["plot"])
            assert h.score == pytest.approx(expect, abs=1e-6)


def test_both_with_filters_matches_brute_force(world):
    both_rows = np.intersect1d(world["poster"][0], world["plot"][0])
    row = int(both_rows[10])
    q = {"poster": item_query(world, "poster", row), "plot": item_query(world, "plot", row)}
    w = {"poster": 0.5, "plot": 0.5}
    keep = world["genres"][:, 2]
    _, got = run(world, q, w, 10, exclude=[row], keep=keep)
    assert_same(got, reference(world, q, w, 10, exclude=[row], keep=keep))


def test_approximate_index_candidates_are_rescored_exactly(world):
    rows, vectors = world["poster"]
    index, _ = ann.build_faiss_index(vectors, "ivf_sq8", params={"nlist": 8, "nprobe": 8})

    def search(queries, k):
        scores, pos = ann.search(index, queries, k)
        return scores, np.where(pos >= 0, rows[np.clip(pos, 0, None)], -1)

    q = item_query(world, "poster", int(rows[40]))
    hits = rank([Source("poster", rows, vectors, search, q)], N_ITEMS, 10, exclude=[int(rows[40])])
    want = reference(
        world, {"poster": q}, {"poster": 1.0}, 10, exclude=[int(rows[40])], threshold=2
    )
    assert_same([(h.row, h.score) for h in hits], want)


def test_bad_k_is_refused(world):
    q = item_query(world, "poster", int(world["poster"][0][0]))
    with pytest.raises(RetrievalError, match="k must be at least 1"):
        rank([source(world, "poster", q)], N_ITEMS, 0)


def test_both_keeps_fetching_until_no_unseen_item_can_beat_the_results(world):
    """With tiny fetches an item good in both modalities but top in neither is found only
    through the bound on unseen scores."""
    both_rows = np.intersect1d(world["poster"][0], world["plot"][0])
    w = {"poster": 0.5, "plot": 0.5}
    for row in both_rows[:60]:
        row = int(row)
        q = {"poster": item_query(world, "poster", row), "plot": item_query(world, "plot", row)}
        _, got = run(world, q, w, 10, exclude=[row], fetch=1)
        assert_same(got, reference(world, q, w, 10, exclude=[row]))
