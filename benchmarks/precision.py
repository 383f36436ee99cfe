"""Reduced precision on this CPU: speed, embedding fidelity and genre quality against fp32.

For each image encoder (default EfficientNet-Lite0) and each precision this CPU offers
(fp32 always; bf16 and int8 where it has the matrix units, see embedgenre.encoders.cpu), the
shared posters are indexed in a temporary folder (posters only) with
``embedgenre index --precision P``, then:
- posters/s of the poster set (encoder load, decode, encode);
- the cosine of every poster's embedding to its fp32 embedding (min, 1st percentile, median);
- ``embedgenre evaluate --methods linear --modalities poster`` (seed-0 split, 5-fold thresholds)
  micro-F1 and mAP, and the difference from fp32 (the target: within 0.005 micro-F1).

    python benchmarks/precision.py [--encoders cnn:efficientnet-lite0] [--limit 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "posters"
MAX_DROP = 0.005


class Refused(Exception):
    """embedgenre refused the run with its one-line error (a precision its check turned down)."""


def embedgenre(*args: str) -> str:
    exe = shutil.which("embedgenre") or str(Path(sys.executable).with_name("embedgenre"))
    out = subprocess.run([exe, "-q", *args], capture_output=True, text=True)
    if out.returncode == 1:
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
        if errors:
            raise Refused(errors[-1].removeprefix("error:").strip())
    if out.returncode:
        raise SystemExit(f"embedgenre {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def poster_catalog(folder: Path, limit: int) -> Path:
    """The shared catalog without plots (posters linked), the first ``limit`` rows (0: all)."""
    with open(DATA / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows[:limit] if limit else rows
    (folder / "posters").mkdir(parents=True)
    for r in rows:
        os.symlink(DATA / r["poster"], folder / r["poster"])
        r["plot"] = ""
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder


def poster_vectors(index: Path) -> dict[str, np.ndarray]:
    from embedgenre.store import GenreIndex

    emb = GenreIndex.open(index).get_set("poster")
    return dict(zip(emb.ids, np.asarray(emb.vectors, dtype=np.float64)))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--encoders", default="cnn:efficientnet-lite0")
    ap.add_argument("--limit", type=int, default=0, help="first N posters (0: all)")
    args = ap.parse_args()

    from embedgenre.encoders.cpu import PRECISIONS, cpu_info, precision_units

    cpu = cpu_info()
    offered = [p for p in PRECISIONS if precision_units(p, cpu)]
    print(f"CPU: {cpu.model}, {cpu.cores} cores, {' '.join(cpu.kernel_features)}")
    print(f"precisions offered here: {', '.join(offered)}")
    tmp = Path(tempfile.mkdtemp(prefix="precision-"))
    lines = []
    try:
        catalog = poster_catalog(tmp / "catalog", args.limit)
        for encoder in [e for e in args.encoders.split(",") if e]:
            reference = None
            for precision in offered:
                out = tmp / f"index-{encoder.replace(':', '_')}-{precision}"
                t0 = time.perf_counter()
                try:
                    summary = json.loads(embedgenre("index", str(catalog), "--out", str(out),
                                                    "--image-encoder", encoder, "--precision",
                                                    precision, "--json"))  # fmt: skip
                except Refused as e:  # the fidelity check on probe images turned it down
                    lines.append(f"| {encoder} | {precision} | refused: {e} |" + " |" * 8)
                    print(lines[-1], flush=True)
                    continue
                wall = time.perf_counter() - t0
                s = next(x for x in summary["sets"] if x["modality"] == "poster")
                rate = s["count"] / s["seconds"]
                report = json.loads(embedgenre("evaluate", str(out), "--methods", "linear",
                                               "--modalities", "poster", "--shots", "none",
                                               "--no-scratch-cnn", "--report",
                                               str(tmp / f"report-{precision}"), "--json"))  # fmt: skip
                row = next(
                    r
                    for r in report["rows"]
                    if r.get("method") == "linear" and r.get("subset") == "all"
                )
                vectors = poster_vectors(out)
                if reference is None:
                    reference = (vectors, row)
                    cos = np.ones(1)
                else:
                    ref = reference[0]
                    common = [i for i in vectors if i in ref]
                    a = np.stack([ref[i] for i in common])
                    b = np.stack([vectors[i] for i in common])
                    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                d_f1 = row["micro_f1"] - reference[1]["micro_f1"]
                lines.append(
                    f"| {encoder} | {precision} | {rate:.1f} | {wall:.0f} s | "
                    f"{cos.min():.5f} | {np.percentile(cos, 1):.5f} | {np.median(cos):.5f} | "
                    f"{row['micro_f1']:.4f} | {row['map']:.4f} | {d_f1:+.4f} | "
                    f"{'yes' if d_f1 >= -MAX_DROP else 'no'} |"
                )
                print(lines[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nposters: {'all' if not args.limit else args.limit} of ../shared/data/posters; "
          "linear poster head, seed-0 split, test micro-F1 / mAP\n")  # fmt: skip
    print("| encoder | precision | posters/s | index wall | min cos to fp32 | 1st pct | median | "
          f"micro-F1 | mAP | micro-F1 vs fp32 | within {MAX_DROP} |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
