"""Every movie's neighbours: `similar --all` (one batched pass) against asking one movie at a time.

Each way runs in a process of its own on the development index, so each reports its own peak
resident memory (VmHWM): the batched pass is the library call `embedgenre similar --all --out`
makes (:meth:`Retriever.similar_all` + :func:`write_neighbours`); one at a time is
:meth:`Retriever.similar` with ``item_id`` for every movie, in one process, with the same records
written the same way. Both answers are compared neighbour by neighbour.

    python benchmarks/similar_all.py [--index indexes/posters-dev] [-k 10] [--by poster]

Time: from opening the index to the written file (the FAISS index built on first use is in
both). Target: the batched pass >= 20x faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_INDEX = ROOT / "indexes" / "posters-dev"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(mode: str, index: Path, k: int, by: str, out: Path) -> None:
    """Run one way, write its records to ``out`` and print {seconds, peak_rss_mb, n} as JSON."""
    from embedgenre.retrieval import AllNeighbours, Hit, open_retriever, write_neighbours

    t0 = time.perf_counter()
    r = open_retriever(index, thumbnails=False)
    if mode == "batch":
        result = r.similar_all(k=k, by=by)
    else:
        queries, hits = [], []
        for row, item_id in enumerate(r.index.ids):
            res = r.similar(item_id=item_id, k=k, by=by)
            queries.append(row)
            hits.append([Hit(r.index.row_of[n.id], n.score, n.cosines) for n in res.neighbours])
        result = AllNeighbours(r.index, by, k, {}, np.asarray(queries), hits)
    write_neighbours(result, out)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "n": len(result.queries)}))


def cpu_name() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(x.split(":", 1)[1].strip() for x in text.splitlines() if "Model name" in x)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=DEFAULT_INDEX)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--by", default="poster", choices=("poster", "plot", "both"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "similar_all.md")
    ap.add_argument("--worker", choices=("batch", "single"), help=argparse.SUPPRESS)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.index, args.k, args.by, args.dump)
        return 0
    if not (args.index / "manifest.json").exists():
        print(f"no index at {args.index}; build it as benchmarks/quality.py says", file=sys.stderr)
        return 2
    runs, records = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("batch", "single"):
            dump = Path(tmp) / f"{mode}.csv"
            cmd = [sys.executable, __file__, "--worker", mode, "--index", str(args.index)]
            cmd += ["-k", str(args.k), "--by", args.by, "--dump", str(dump)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return 1
            runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            records[mode] = dump.read_text().splitlines()
            print(mode, runs[mode], file=sys.stderr)
    same = records["batch"] == records["single"]
    b, s = runs["batch"], runs["single"]
    command = "python benchmarks/similar_all.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    lines = [
        "# Every movie's neighbours: `similar --all` against one movie at a time",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; CPU: {cpu_name()} "
        f"({os.cpu_count()} cores, shared with other work)",
        f"- index: {args.index.name}, {b['n']} movies, k = {args.k}, by {args.by} (flat FAISS)",
        "",
        "| way | seconds | movies/s | peak RSS (MB) |",
        "|---|---|---|---|",
        f"| `similar --all` (batched) | {b['seconds']:.2f} | {b['n'] / b['seconds']:.0f} | "
        f"{b['peak_rss_mb']:.0f} |",
        f"| one movie at a time, one process | {s['seconds']:.2f} | {s['n'] / s['seconds']:.0f} | "
        f"{s['peak_rss_mb']:.0f} |",
        "",
        f"Speed-up: {s['seconds'] / b['seconds']:.1f}x. Same neighbours, ranks and scores "
        f"(records identical): {'yes' if same else 'NO'}.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
