"""Retrieval benchmark: neighbour quality on the shared posters, and query latency / recall at scale.

(a) quality: genre-overlap precision@10 (a neighbour counts when it shares at least one genre with
    the query) of `similar --by poster|plot|both` over every item of the index, against 10 random
    neighbours from the same pool in the same run.
(b) latency: warm single-query search, median and p99 over ``--queries`` queries, on the index's
    own embedding sets (flat) and on ``--n`` synthetic L2-normalised 512-d vectors with the
    approximate index ``auto`` picks (IVF-SQ8 at 1M), recall@10 against exact flat search on
    ``--gt-queries`` queries, build time and index size.

    python benchmarks/retrieval.py                     # both parts, 1M synthetic vectors
    python benchmarks/retrieval.py --part latency --n 200000
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _synthetic import synthetic_vectors  # noqa: E402 (the tests' generator)

console = Console(width=170)


def rss_bytes() -> int:
    """Current resident memory of this process (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def precision_at_10(retriever, queries, by, pool_labels_of, rng, **kw):
    """Mean share of the 10 neighbours sharing a genre with the query, and the same for random."""
    labels = retriever.index.labels.astype(bool)
    row_of = retriever.index.row_of
    hits, rand = [], []
    pool = np.asarray(pool_labels_of)
    for item_id in queries:
        q = row_of[item_id]
        result = retriever.similar(item_id=item_id, k=10, by=by, **kw)
        rows = [row_of[n.id] for n in result.neighbours]
        hits.append(np.mean([(labels[r] & labels[q]).any() for r in rows]))
        others = pool[pool != q]
        pick = rng.choice(others, size=10, replace=False)
        rand.append(np.mean([(labels[r] & labels[q]).any() for r in pick]))
    return float(np.mean(hits)), float(np.mean(rand))


def quality(index_dir: Path, max_queries: int | None, seed: int) -> None:
    from embedgenre.retrieval import Retriever
    from embedgenre.store import GenreIndex

    idx = GenreIndex.open(index_dir)
    r = Retriever(idx)
    poster, plot = idx.get_set("poster"), idx.get_set("plot")
    ids = np.array(idx.ids)
    rng = np.random.default_rng(seed)
    with_poster = ids[poster.rows]
    with_plot = ids[plot.rows]
    with_both = ids[np.intersect1d(poster.rows, plot.rows)]
    if max_queries:
        with_poster, with_plot, with_both = (
            rng.choice(a, size=min(len(a), max_queries), replace=False)
            for a in (with_poster, with_plot, with_both)
        )
    all_rows = np.union1d(poster.rows, plot.rows)
    all_ids = ids[all_rows]
    if max_queries:
        all_ids = rng.choice(all_ids, size=min(len(all_ids), max_queries), replace=False)
    runs = [
        ("poster", "poster", with_poster, poster.rows, {}),
        ("plot", "plot", with_plot, plot.rows, {}),
        ("both (default, w=0.5)", "both", with_both, all_rows, {}),
        ("both, w=0.3", "both", with_both, all_rows, {"plot_weight": 0.3}),
        ("both, w=0.7", "both", with_both, all_rows, {"plot_weight": 0.7}),
        ("poster, the queries of both", "poster", with_both, poster.rows, {}),
        ("both, every item as query*", "both", all_ids, all_rows, {}),
    ]
    table = Table(
        "by",
        "queries",
        "pool",
        "P@10",
        "random P@10",
        "x random",
        "s",
        title=f"genre-overlap precision@10 on {index_dir.name} "
        f"(poster: {poster.encoder}, plot: {plot.encoder})",
    )
    for name, by, queries, pool, kw in runs:
        t = time.perf_counter()
        p, rnd = precision_at_10(r, queries, by, pool, rng, **kw)
        table.add_row(
            name,
            str(len(queries)),
            str(len(pool)),
            f"{p:.3f}",
            f"{rnd:.3f}",
            f"{p / rnd:.2f}x",
            f"{time.perf_counter() - t:.0f}",
        )
        console.print(f"  done: {name} ({len(queries)} queries)", style="dim")
    console.print(table)
    console.print(
        "pool: the items a query's neighbours (and its random neighbours) come from. "
        "*queries without a plot fall back to posters."
    )


def latencies(fn, queries: np.ndarray) -> np.ndarray:
    """Per-query wall time in ms of ``fn(q[None])`` over ``queries``, after 20 warm-up calls."""
    for q in queries[:20]:
        fn(q[None, :])
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        fn(q[None, :])
        out[i] = (time.perf_counter() - t) * 1000
    return out


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(ids, exact)]))


def latency_catalog(index_dir: Path, n_queries: int, seed: int, table: Table) -> None:
    from embedgenre import ann
    from embedgenre.retrieval import Retriever
    from embedgenre.store import GenreIndex

    idx = GenreIndex.open(index_dir)
    rng = np.random.default_rng(seed)
    for s in (idx.get_set("poster"), idx.get_set("plot")):
        vecs = np.asarray(s.vectors)
        q = vecs[rng.choice(len(vecs), size=n_queries, replace=True)]
        index = s.faiss_index
        ms = latencies(lambda x, index=index: ann.search(index, x, 10), q)
        info = ann.describe_faiss(index)
        table.add_row(
            f"{s.modality} {s.encoder}",
            f"{len(vecs):,} x {s.dim}",
            info["kind_string"],
            "1.000",
            f"{np.median(ms):.3f}",
            f"{np.percentile(ms, 99):.3f}",
            f"{info['bytes'] / 1e6:.1f}",
            "-",
            "faiss search only",
        )
    # the whole `similar --id` path: search, exact re-scoring, filters, duplicate folding
    r = Retriever(idx)
    poster = idx.get_set("poster")
    picks = np.array(idx.ids)[rng.choice(poster.rows, size=n_queries, replace=True)]
    for item_id in picks[:20]:
        r.similar(item_id=item_id)
    ms = np.empty(len(picks))
    for i, item_id in enumerate(picks):
        t = time.perf_counter()
        r.similar(item_id=item_id, k=10)
        ms[i] = (time.perf_counter() - t) * 1000
    table.add_row(
        f"similar --id (poster {poster.encoder})",
        f"{len(poster.rows):,} x {poster.dim}",
        "flat",
        "1.000",
        f"{np.median(ms):.3f}",
        f"{np.percentile(ms, 99):.3f}",
        "-",
        "-",
        "Retriever.similar end to end",
    )


def latency_synthetic(
    n: int,
    dim: int,
    n_queries: int,
    gt_queries: int,
    kinds: list[str],
    probes: list[int],
    seed: int,
    table: Table,
) -> None:
    import faiss

    from embedgenre import ann

    t = time.perf_counter()
    data = synthetic_vectors(n + n_queries, dim, seed=seed)
    base, queries = data[:n], data[n:].copy()
    del data
    console.print(f"generated {n:,} x {dim} synthetic vectors in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    _, exact = flat.search(queries[:gt_queries], 10)
    console.print(
        f"exact top-10 of {gt_queries} queries by flat search: {time.perf_counter() - t:.0f} s"
    )
    flat_ms = latencies(lambda x: ann.search(flat, x, 10), queries[:10])
    table.add_row(
        "synthetic",
        f"{n:,} x {dim}",
        "flat (10 queries)",
        "1.000",
        f"{np.median(flat_ms):.3f}",
        f"{np.percentile(flat_ms, 99):.3f}",
        f"{base.nbytes / 1e6:.0f}",
        "-",
        "exact reference",
    )
    flat.reset()  # free the exact copy before building the approximate index
    for kind in kinds:
        rss0 = rss_bytes()
        t = time.perf_counter()
        index, _ = ann.build_faiss_index(base, kind)
        build_s = time.perf_counter() - t
        rss = rss_bytes() - rss0
        info = ann.describe_faiss(index)
        settings = [None] if not probes else probes
        for p in settings:
            if p is not None:
                if info["kind"].startswith("ivf"):
                    ann.set_search_params(index, nprobe=p)
                else:
                    ann.set_search_params(index, ef_search=p)
            ks = ann.describe_faiss(index)["kind_string"]
            _, got = ann.search(index, queries[:gt_queries], 10)
            ms = latencies(lambda x, index=index: ann.search(index, x, 10), queries)
            table.add_row(
                "synthetic",
                f"{n:,} x {dim}",
                ks,
                f"{recall(got, exact):.3f}",
                f"{np.median(ms):.3f}",
                f"{np.percentile(ms, 99):.3f}",
                f"{info['bytes'] / 1e6:.0f}",
                f"{build_s:.0f}",
                f"RSS +{rss / 1e6:.0f} MB after build",
            )
            console.print(f"  done: {ks}", style="dim")
        del index


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["all", "quality", "latency"], default="all")
    parser.add_argument(
        "--index",
        type=Path,
        default=ROOT / "indexes" / "posters-dev",
        help="index of ../shared/data/posters (EfficientNet-Lite0 + MiniLM)",
    )
    parser.add_argument(
        "--max-queries",
        type=int,
        default=None,
        help="quality: at most this many query items per mode (default: all)",
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors (default 1M)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000, help="timed single queries")
    parser.add_argument(
        "--gt-queries", type=int, default=200, help="queries with exact ground truth"
    )
    parser.add_argument("--kinds", default="auto", help="index kinds to time, comma-separated")
    parser.add_argument(
        "--probes",
        default="16,32,64",
        help="nprobe (IVF) / ef_search (HNSW) values to time; empty: the defaults",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="FAISS OpenMP threads (default: FAISS's own, one per core)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import os

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    console.print(
        f"FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP thread(s), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
    )

    if args.part in ("all", "quality"):
        quality(args.index, args.max_queries, args.seed)
    if args.part in ("all", "latency"):
        table = Table(
            "data",
            "vectors",
            "index",
            "recall@10",
            "median ms",
            "p99 ms",
            "index MB",
            "build s",
            "note",
            title="warm single-query search, k=10",
        )
        if args.index.exists():
            latency_catalog(args.index, args.queries, args.seed, table)
        else:
            console.print(f"[yellow]no index at {args.index}; skipping the catalog rows[/]")
        probes = [int(p) for p in args.probes.split(",") if p]
        latency_synthetic(
            args.n,
            args.dim,
            args.queries,
            args.gt_queries,
            args.kinds.split(","),
            probes,
            args.seed,
            table,
        )
        console.print(table)


if __name__ == "__main__":
    main()
