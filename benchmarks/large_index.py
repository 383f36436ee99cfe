"""A large FAISS index under a memory budget: synthetic clustered vectors, never all in memory.

1. ``--n`` seeded clustered 512-d vectors (plus ``--queries`` held-out queries from the same
   distribution) are generated chunk by chunk into a vectors.npy memory map, as an index's
   embedding set stores them;
2. the set's index is chosen and built as ``embedgenre index`` does it
   (:func:`embedgenre.ann.write_set_index` with ``--memory``, 4GB by default): IVF-PQ trained
   on a sample, its inverted lists filled in shards and merged on disk;
3. exact top-10 of every query by a streaming brute force over the memory map;
4. recall@10 and single-query latency (median, p99) for a range of ``nprobe``, from the index
   alone and with the top-100 candidates re-scored from the stored vectors (what ``similar`` and
   ``search`` do); build time, peak RSS of the build (run in a process of its own), size on disk.

``--compare N`` repeats steps 1-4 at N vectors for today's ``auto`` choice there (IVF-SQ8) and
for IVF-PQ, and measures float16 storage: the recall of re-scoring with vectors rounded to
float16 instead of float32.

    python benchmarks/large_index.py [--n 10000000] [--memory 4GB] [--compare 1000000]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from distributed import cpu_model  # same folder

from embedgenre import ann
from embedgenre.store.vectors import read_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _synthetic import synthetic_chunks  # noqa: E402 (the tests' generator)

NPROBES = (8, 16, 32, 64, 128)
CANDIDATES = 100  # candidates re-scored exactly per query
K = 10


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: KiB


def generate(path: Path, n: int, n_queries: int, dim: int, seed: int, chunk: int):
    """Write ``n`` vectors to ``path`` (a .npy file, appended block by block, so none of it stays
    in this process's memory) and return (its memory map, the held-out queries)."""
    queries = []
    start = 0
    clusters = max(100, min(10_000, n // 100))
    with open(path, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (n, dim)}
        np.lib.format.write_array_header_1_0(f, header)
        for block in synthetic_chunks(
            n + n_queries, dim, n_clusters=clusters, seed=seed, chunk=chunk
        ):
            take = min(len(block), max(0, n - start))
            block[:take].tofile(f)
            if take < len(block):
                queries.append(block[take:])
            start += len(block)
    return np.load(path, mmap_mode="r"), np.ascontiguousarray(np.concatenate(queries))


def latency(index, queries: np.ndarray, vectors=None) -> tuple[np.ndarray, float, float]:
    """Found ids (q, K) one query at a time, and the median and p99 latency in ms. With
    ``vectors``, the top CANDIDATES are re-scored exactly from them."""
    found = np.empty((len(queries), K), np.int64)
    times = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        _, ids = index.search(q[None, :], CANDIDATES if vectors is not None else K)
        ids = ids[0]
        if vectors is not None:
            ids = ids[ids >= 0]
            rows = np.sort(ids)
            exact = np.asarray(vectors[rows], dtype=np.float32) @ q
            ids = rows[np.argsort(-exact, kind="stable")]
        times.append(time.perf_counter() - t0)
        found[i] = np.pad(ids[:K], (0, max(0, K - len(ids[:K]))), constant_values=-1)
    ms = np.array(times) * 1e3
    return found, float(np.median(ms)), float(np.percentile(ms, 99))


def _build(path: str, directory: str, kind: str, memory: int) -> tuple[dict, float, float]:
    """In a child process: build the index of the vectors at ``path``; (meta, seconds, peak
    RSS in GB of this process, which did nothing but the build)."""
    vectors = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    meta = ann.write_set_index(vectors, Path(directory), kind, memory)
    return meta, time.perf_counter() - t0, hwm_gb()


def hwm_gb() -> float:
    """This process's peak RSS since it started its program (VmHWM: unlike ru_maxrss, it does
    not carry over the RSS of the parent that forked it)."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb / 1e6


def measure(vectors, queries, truth, directory: Path, kind: str, memory: int) -> dict:
    # The build runs in a new process, as `embedgenre index` would run it, so its peak RSS is its
    # own: this process has touched every page of the mapped vectors generating them and
    # computing the exact answers, and those file pages count in its RSS.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        meta, build, build_rss = pool.apply(
            _build, (str(vectors.filename), str(directory), kind, memory)
        )
    files = [directory / "faiss.index", directory / "faiss.ivfdata"]
    row = {
        "kind": meta["kind"],
        "build_s": round(build, 1),
        "index_bytes_on_disk": sum(f.stat().st_size for f in files if f.exists()),
        "estimated_resident_bytes": ann.index_bytes(
            *ann.parse_kind(meta["kind"])[:1],
            len(vectors),
            vectors.shape[1],
            ann.parse_kind(meta["kind"])[1],
        ),  # fmt: skip
        "build_peak_rss_gb": round(build_rss, 2),
        "nprobe": {},
    }
    index = ann.load_faiss_index(directory / "faiss.index")
    nlist = faiss.extract_index_ivf(index).nlist
    for nprobe in (p for p in NPROBES if p <= nlist):
        ann.set_search_params(index, nprobe=nprobe)
        found, med, p99 = latency(index, queries)
        rescored, med_r, p99_r = latency(index, queries, vectors)
        row["nprobe"][nprobe] = {
            "recall": round(ann.recall_at_k(found, truth), 4),
            "median_ms": round(med, 3),
            "p99_ms": round(p99, 3),
            "recall_rescored": round(ann.recall_at_k(rescored, truth), 4),
            "median_ms_rescored": round(med_r, 3),
            "p99_ms_rescored": round(p99_r, 3),
        }
        print(kind, nprobe, row["nprobe"][nprobe], flush=True)
    del index
    return row


def float16_effect(vectors, queries, truth, step: int = 50_000) -> dict:
    """Recall@10 of exact search when the stored vectors are float16 instead of float32."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    for start in range(0, len(vectors), step):
        block = read_rows(vectors, start, start + step)
        block = block.astype(np.float16).astype(np.float32)
        s = q @ block.T
        top = np.argpartition(-s, K, axis=1)[:, :K]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-cand_s, axis=1, kind="stable")[:, :K]
        best_s, best_i = (np.take_along_axis(a, keep, axis=1) for a in (cand_s, cand_i))
    return {
        "recall_exact_float16": round(ann.recall_at_k(best_i, truth), 4),
        "bytes_per_vector": {"float32": 4 * vectors.shape[1], "float16": 2 * vectors.shape[1]},
    }


def run(n: int, args, kinds: list[str], fp16: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="embedgenre-large-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        vectors, queries = generate(tmp / "vectors.npy", n, args.queries, 512, 0, args.chunk)
        result = {"n": n, "generate_s": round(time.perf_counter() - t0, 1)}
        t0 = time.perf_counter()
        _, truth = ann.exact_top_k(vectors, queries, K, step=50_000)
        result["exact_s"] = round(time.perf_counter() - t0, 1)
        print(n, "generated and exact", result, flush=True)
        if fp16:
            result["float16"] = float16_effect(vectors, queries, truth)
            print("float16", result["float16"], flush=True)
        for kind in kinds:
            d = tmp / kind.replace(":", "_")
            d.mkdir()
            result[kind] = measure(vectors, queries, truth, d, kind, args.memory)
            shutil.rmtree(d)
        result["peak_rss_gb"] = round(peak_rss_gb(), 2)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--memory", type=ann.parse_memory, default=ann.parse_memory("4GB"))
    ap.add_argument("--compare", type=int, default=1_000_000, help="0: no comparison run")
    ap.add_argument("--chunk", type=int, default=250_000, help="rows generated at a time")
    ap.add_argument("--workdir", type=Path, default=None, help="where the vectors are written")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = {
        "cpu": cpu_model(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "memory": args.memory,
    }
    if args.compare:
        results["compare"] = run(args.compare, args, ["auto", "ivf_pq"], fp16=True)
    results["large"] = run(args.n, args, ["auto"], fp16=False)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
