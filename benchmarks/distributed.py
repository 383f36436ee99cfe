"""The Ray engine against the local engine on the shared posters, in one process, one run.

Indexes the same posters (default image encoder, plots left out: posters/s is the figure) with

1. the local engine (decode threads + the model in this process),
2. ``--engine ray`` with 1 encoder actor, then with 2, on a local Ray cluster of ``--cpus`` CPUs
   started here (the time to start it is reported separately: a real cluster is already up),
3. the local engine again, so the ratio is taken against the mean of two local runs.

For each: seconds, posters/s, seconds to the first chunk (for Ray: actors starting and loading
the model), and the ratio to the local engine (target: Ray on 2 CPUs >= 0.85x). Every run
starts from an empty index, and the Ray indexes are checked to equal the local one.

    python benchmarks/distributed.py [--catalog ../shared/data/posters] [--limit 1500] [--json F]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from index_speed import DEFAULT_CATALOG, write_subset  # same folder

from embedgenre.catalog import read_catalog
from embedgenre.encoders import default_image_encoder_name
from embedgenre.indexing import build_index
from embedgenre.store import GenreIndex


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed_build(catalog, out: Path, encoder: str, engine=None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = build_index(catalog, out, [encoder], engine=engine)
    seconds = time.perf_counter() - t0
    (s,) = summary.sets
    row = {
        "seconds": round(seconds, 2),
        "posters": s.encoded,
        "posters_per_s": round(s.encoded / seconds, 2),
        "encode_seconds": s.seconds,
    }
    if engine is not None and engine.runs:
        row["first_chunk_s"] = engine.runs[-1]["first_chunk_s"]
        row["resources"] = engine.runs[-1]["resources"]
    return row


def same_vectors(a: Path, b: Path) -> float:
    """The smallest cosine between the two indexes' poster vectors (ids must agree)."""
    sa, sb = GenreIndex.open(a).get_set("poster"), GenreIndex.open(b).get_set("poster")
    assert list(sa.ids) == list(sb.ids), "the two engines indexed different posters"
    return float(np.sum(np.asarray(sa.vectors) * np.asarray(sb.vectors), axis=1).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    ap.add_argument("--limit", type=int, default=1500, help="posters indexed per run")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with open(args.catalog / "movies.csv", newline="", encoding="utf-8") as f:
        rows = [{**r, "plot": ""} for r in list(csv.DictReader(f))[: args.limit]]
    tmp = Path(tempfile.mkdtemp(prefix="embedgenre-distributed-"))
    try:
        catalog = read_catalog(write_subset(args.catalog, rows, tmp / "catalog"))
        encoder = default_image_encoder_name()
        results: dict = {
            "cpu": cpu_model(),
            "posters": len(rows),
            "encoder": encoder,
            "runs": {},
        }
        runs = results["runs"]
        runs["local"] = timed_build(catalog, tmp / "local", encoder)
        print("local", runs["local"], flush=True)

        import ray

        from embedgenre.distributed import RayEngine

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        results["ray_init_s"] = round(time.perf_counter() - t0, 2)
        for workers in (1, 2):
            key = f"ray-{workers}"
            runs[key] = timed_build(catalog, tmp / key, encoder, RayEngine(workers=workers))
            runs[key]["min_cosine_to_local"] = same_vectors(tmp / "local", tmp / key)
            print(key, runs[key], flush=True)
        ray.shutdown()
        runs["local-again"] = timed_build(catalog, tmp / "local-again", encoder)
        print("local-again", runs["local-again"], flush=True)

        local = (runs["local"]["seconds"] + runs["local-again"]["seconds"]) / 2
        for key in ("ray-1", "ray-2"):
            runs[key]["vs_local"] = round(local / runs[key]["seconds"], 3)
            runs[key]["overhead_s"] = round(runs[key]["seconds"] - local, 2)
        results["local_mean_s"] = round(local, 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nCPU: {results['cpu']}; {results['posters']} posters, {encoder}")
    print(f"Ray cluster start ({args.cpus} CPUs): {results['ray_init_s']} s")
    print("| engine | s | posters/s | first chunk s | vs local |")
    print("|---|---|---|---|---|")
    for key, r in runs.items():
        print(
            f"| {key} | {r['seconds']} | {r['posters_per_s']} | {r.get('first_chunk_s', '')} | "
            f"{r.get('vs_local', '')} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
