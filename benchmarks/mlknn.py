"""ML-kNN fit + predict: the vectorised implementation vs the loop-by-loop reference.

Seeded synthetic data: N x D L2-normalised vectors, G labels. The vectorised predictor (FAISS
search + numpy counting) fits on the training vectors and predicts the queries. The reference
does the same in plain Python: brute-force neighbour search one item at a time
(``reference_neighbours``, float64) and the ML-kNN statistics in loops (``reference_mlknn``).
The reference's loops take the FAISS neighbour lists, so the posteriors are compared on the
same neighbours (the check is about the ML-kNN math); how many neighbour lists the two searches
disagree on (float32 vs float64 near-ties) is reported separately. ``--ref-items`` runs the
reference on a subset and extrapolates its time (the table says so). Both are timed after a
small warm-up fit (imports, thread pools).

    python benchmarks/mlknn.py            # 10,000 x 512, 25 labels, k=10, 1,000 queries
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_data(n: int, d: int, g: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < rng.uniform(0.01, 0.3, g)).astype(np.uint8)
    X = Y @ rng.standard_normal((g, d)) + 3.0 * rng.standard_normal((n, d))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    return X, Y


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--labels", type=int, default=25)
    ap.add_argument("--queries", type=int, default=1_000, help="test items (taken from the data)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="vectorised runs (median reported)")
    ap.add_argument(
        "--ref-items",
        type=int,
        default=0,
        help="run the reference on this many items only (0 = all)",
    )
    args = ap.parse_args()

    from embedgenre.predictors.neighbors import (
        MLKNNPredictor,
        reference_mlknn,
        reference_neighbours,
        search,
    )

    X, Y = make_data(args.items + args.queries, args.dim, args.labels)
    Xtr, Ytr, Q = X[: args.items], Y[: args.items], X[args.items :]
    # warm-up outside the timing: the faiss import and its thread pool start-up (~1 s) are a
    # once-per-process cost, not ML-kNN work
    MLKNNPredictor(k=2).fit(Xtr[:50], Ytr[:50]).predict_proba(Q[:5])
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        model = MLKNNPredictor(k=args.k, s=1.0).fit(Xtr, Ytr)
        fast = model.predict_proba(Q)
        runs.append(time.perf_counter() - t)
    t_fast = float(np.median(runs))

    n_ref = args.ref_items or args.items
    t = time.perf_counter()
    ref_train = reference_neighbours(Xtr[:n_ref], None, args.k)
    ref_query = reference_neighbours(Xtr[:n_ref], Q, args.k)
    t_search = time.perf_counter() - t
    # the statistics: on the FAISS neighbour lists (same time as on the reference's own lists)
    faiss_train = search(model.index_, Xtr, args.k, exclude_self=True)[1]
    faiss_query = search(model.index_, Q, args.k)[1]
    if n_ref < args.items:
        lists = (ref_train, ref_query)
    else:
        lists = (faiss_train, faiss_query)
    t = time.perf_counter()
    ref = reference_mlknn(Xtr[:n_ref], Ytr[:n_ref], Q, args.k, 1.0, neighbours=lists)
    t_loops = time.perf_counter() - t
    # the vectorised statistics alone, on the same neighbour lists (search excluded)
    stats = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        model._fit_statistics(faiss_train)
        model._posteriors(faiss_query)
        stats.append(time.perf_counter() - t)
    t_stats = float(np.median(stats))
    t_ref = t_search + t_loops
    note = "measured"
    if n_ref < args.items:
        scale = (args.items / n_ref) ** 2  # n brute-force searches over n items
        t_search, t_loops = t_search * scale, t_loops * args.items / n_ref
        t_ref = t_search + t_loops
        note = f"extrapolated from {n_ref} items"
        same = "not compared (subset)"
    else:
        diff = np.abs(fast - ref)
        n_lists = int((np.sort(ref_train, 1) != np.sort(faiss_train, 1)).any(1).sum())
        n_lists += int((np.sort(ref_query, 1) != np.sort(faiss_query, 1)).any(1).sum())
        same = (
            f"posteriors on the same neighbour lists: max |diff| {diff.max():.2e} over "
            f"{diff.size:,} values; neighbour sets that differ between float64 brute force and "
            f"FAISS (float32 near-ties): {n_lists}/{args.items + len(Q)}"
        )

    print(
        f"\nML-kNN fit+predict: {args.items} x {args.dim}, {args.labels} labels, k={args.k}, "
        f"{args.queries} queries\n"
    )
    print("| implementation | seconds | note |")
    print("|---|---:|---|")
    rep = f"median of {args.repeats}"
    print(f"| vectorised total (FAISS search + bincount) | {t_fast:.3f} | measured, {rep} |")
    print(f"| vectorised: ML-kNN statistics only | {t_stats:.3f} | measured, {rep} |")
    print(f"| reference total | {t_ref:.3f} | {note} |")
    print(f"| reference: brute-force search | {t_search:.3f} | {note} |")
    print(f"| reference: ML-kNN loops | {t_loops:.3f} | {note} |")
    print(
        f"\nspeed-up, fit + predict end to end: {t_ref / t_fast:.0f}x; ML-kNN statistics on the "
        f"same neighbour lists: {t_loops / t_stats:.0f}x\n{same}"
    )


if __name__ == "__main__":
    main()
