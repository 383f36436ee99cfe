"""How long one poster-file query takes: `similar --poster FILE` on a loaded index.

A poster file is encoded, looked up among the indexed posters (an indexed file is never its own
neighbour) and ranked. This times ``Retriever.similar(poster=path, k=10)`` warm, in one process,
for ``--queries`` posters spread over the index (each matches an indexed item) and for the same posters
copied outside the index (no match), and prints the median and 90th percentile.

``--compare TREE`` runs this same script under another checkout's ``.venv`` (an earlier commit's
worktree, say), alternating the two ``--repeat`` times, and prints both and their ratio.

    python benchmarks/poster_query.py --index indexes/posters-dev
    python benchmarks/poster_query.py --index indexes/posters-dev --compare /tmp/before
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_queries(index_dir: Path, n: int) -> dict[str, float]:
    """Median and p90 milliseconds of warm poster queries, indexed posters and outside copies."""
    from embedgenre.retrieval import open_retriever

    retriever = open_retriever(index_dir)
    every = [Path(it["poster"]) for it in retriever.index.items if it.get("poster")]
    posters = every[:: max(1, len(every) // n)][:n]  # spread over the index, not its first rows
    if not posters:
        raise SystemExit(f"{index_dir}: no item has a poster")
    out: dict[str, float] = {"items": len(retriever.index.items), "queries": len(posters)}
    with tempfile.TemporaryDirectory(prefix="poster-query-") as tmp:
        copies = []
        for i, p in enumerate(posters):
            copy = Path(tmp) / f"q{i}{p.suffix}"
            shutil.copyfile(p, copy)
            copies.append(copy)
        retriever.similar(poster=posters[0], k=10)  # warm: encoder loaded, FAISS index built
        for label, files in (("indexed", posters), ("outside", copies)):
            ms = []
            for path in files:
                t0 = time.perf_counter()
                retriever.similar(poster=path, k=10)
                ms.append((time.perf_counter() - t0) * 1000)
            ms.sort()
            out[f"{label} median ms"] = statistics.median(ms)
            out[f"{label} p90 ms"] = ms[int(0.9 * (len(ms) - 1))]
    return out


def compare(index_dir: Path, n: int, other: Path, repeat: int) -> None:
    """This checkout and ``other`` alternately, each in its own process."""
    trees = {"this": ROOT, "other": other}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(repeat):
        for name, tree in trees.items():
            cmd = [
                str(tree / ".venv" / "bin" / "python"),
                str(Path(__file__).resolve()),
                "--index",
                str(index_dir),
                "--queries",
                str(n),
                "--json",
            ]
            done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{tree}: {done.stderr.strip()[-2000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    keys = [k for k in runs["this"][0] if k.endswith("ms")]
    print(f"poster queries on {index_dir} ({runs['this'][0]['items']} items), {n} queries, ")
    print(f"{repeat} alternating runs each; this = {ROOT}, other = {other}\n")
    print("| measure | this | other | this / other |")
    print("|---|---:|---:|---:|")
    for key in keys:
        a = statistics.median(r[key] for r in runs["this"])
        b = statistics.median(r[key] for r in runs["other"])
        print(f"| {key} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--index", type=Path, default=ROOT / "indexes" / "posters-dev")
    ap.add_argument("--queries", type=int, default=200, help="posters to query (default 200)")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout to time against")
    ap.add_argument("--repeat", type=int, default=3, help="with --compare: runs of each")
    ap.add_argument("--json", action="store_true", help="one JSON line (used by --compare)")
    args = ap.parse_args(argv)
    if args.compare is not None:
        compare(args.index.resolve(), args.queries, args.compare.resolve(), args.repeat)
        return 0
    result = time_queries(args.index, args.queries)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value:.1f}" if isinstance(value, float) else f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
