"""Latency of `embedgenre predict` on one poster with the default offline encoders.

Builds a small index of ../shared/data/fixture in a temporary directory (or uses --index),
trains a linear poster head, then times:
- cold: a new process running `embedgenre predict POSTER --index IDX --json` (imports, index
  open, model load, encode, predict), median of --runs;
- warm: the library call with the encoder already loaded (encode + predict), median of --runs.

    python benchmarks/predict_latency.py
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "data" / "fixture"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--index", type=Path, default=None, help="existing index (default: build one)")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    from embedgenre import heads as H
    from embedgenre import predict as P
    from embedgenre.catalog import read_catalog
    from embedgenre.predictors import HeadSpec
    from embedgenre.store import GenreIndex

    tmp = Path(tempfile.mkdtemp(prefix="predict-latency-"))
    try:
        index_dir = args.index
        if index_dir is None:
            from embedgenre.indexing import build_index

            index_dir = tmp / "index"
            build_index(
                read_catalog(FIXTURE),
                index_dir,
                image_encoders=["cnn:efficientnet-lite0"],
                text_encoders=["hybrid:all-MiniLM-L6-v2"],
            )
        index = GenreIndex.open(index_dir)
        head = H.train_head(index, HeadSpec("linear", "poster"), name="latency-linear")
        poster = str(sorted((FIXTURE / "posters").glob("*.jpg"))[0])
        exe = shutil.which("embedgenre") or str(Path(sys.executable).with_name("embedgenre"))
        cmd = [
            exe,
            "-q",
            "predict",
            poster,
            "--index",
            str(index_dir),
            "--head",
            "latency-linear",
            "--json",
        ]
        cold = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            cold.append(time.perf_counter() - t)
        q = P.load_query_encoders(index, H.load_head(index, head.name))
        P.predict_inputs(q, [poster])  # first call warms up the runtime
        warm = []
        for _ in range(args.runs):
            t = time.perf_counter()
            P.predict_inputs(q, [poster])
            warm.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n`embedgenre predict` on one poster, {head.encoders['poster']['encoder']}, "
        f"linear head, median of {args.runs}\n"
    )
    print("| mode | median | min | max | target |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| cold (new process) | {statistics.median(cold):.2f} s | {min(cold):.2f} s | "
        f"{max(cold):.2f} s | < 3 s |"
    )
    print(
        f"| warm (library call) | {statistics.median(warm) * 1000:.1f} ms | "
        f"{min(warm) * 1000:.1f} ms | {max(warm) * 1000:.1f} ms | < 50 ms |"
    )


if __name__ == "__main__":
    main()
