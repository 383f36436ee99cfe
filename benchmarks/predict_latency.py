"""Latency of `embedgenre predict POSTER`: a new process per call (cold) and a loaded Predictor
(warm), for the default CNN (EfficientNet-Lite0) and for a full-size CLIP ViT-B-32.

Each encoder gets an index of ../shared/data/fixture (110 movies) in a temporary folder and a
temporary model cache, then:
- cold, saved head: ``embedgenre predict POSTER --index IDX --head NAME --json`` in a new
  process (imports, index open, model load, encode, predict), median of --runs;
- cold, no head (CLIP): ``embedgenre predict POSTER --index IDX --json`` with no trained head,
  so the zero-shot head is used: the first call calibrates and saves it (timed on its own),
  the next --runs load it;
- warm: ``Predictor.predict`` on a Predictor already open (encode + predict), median of --runs.

The CLIP model is open_clip's ViT-B-32 with random weights (the size and speed of the real one;
nothing is downloaded), saved as ``open_clip_pytorch_model.bin`` and brought in with
``embedgenre models import`` as a user's checkpoint would be. Indexing it exports both towers
to ONNX once, which is what a user's first index does too.

    python benchmarks/predict_latency.py                 # lite0 and clip, --runs 20
    python benchmarks/predict_latency.py --encoders lite0 --runs 5
    python benchmarks/predict_latency.py --encoders clip,clip-int8   # needs int8 units
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "data" / "fixture"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clip_speed import NAME as CLIP  # noqa: E402 (a sibling script)
from clip_speed import embedgenre, save_random_vit  # noqa: E402

TARGETS = {"lite0": 1.2, "clip": 2.0, "clip-int8": 2.0}  # cold seconds
WARM_TARGET_MS = 30


def cold(args: list[str], runs: int, env: dict) -> list[float]:
    return [embedgenre(*args, env=env)[0] for _ in range(runs)]


def warm(index: Path, head: str | None, poster: str, runs: int, env: dict) -> float:
    """Median seconds of Predictor.predict on one poster, in a new process (its own threads)."""
    code = (
        "import time, statistics\n"
        "from embedgenre.predict import Predictor\n"
        f"p = Predictor.open({str(index)!r}, head={head!r})\n"
        f"p.predict(posters=[{poster!r}])\n"
        "ts = []\n"
        f"for _ in range({runs}):\n"
        "    t = time.perf_counter()\n"
        f"    p.predict(posters=[{poster!r}])\n"
        "    ts.append(time.perf_counter() - t)\n"
        "print(statistics.median(ts))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"warm predict failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def prepare(encoder: str, tmp: Path, env: dict) -> tuple[Path, str]:
    """(index folder, image encoder name) for ``encoder``, indexed from the fixture."""
    index = tmp / f"index-{encoder}"
    if encoder.startswith("clip"):
        if not (tmp / "download").is_dir():
            ckpt = save_random_vit(tmp / "download")
            embedgenre("models", "import", str(ckpt), "--as", CLIP, env=env)
        encoders = ["--image-encoder", CLIP, "--text-encoder", CLIP]
        name = CLIP
        if encoder == "clip-int8":  # posters encoded, and then queried, by the int8 model
            encoders += ["--precision", "int8"]
            name = f"{CLIP} int8"
    else:
        encoders, name = [], "cnn:efficientnet-lite0"
    t, _ = embedgenre("index", str(FIXTURE), "--out", str(index), *encoders, env=env)
    print(f"[{encoder}] index of the fixture (first use: exports, backend measurement): {t:.0f} s")
    return index, name


def row(label: str, times: list[float], target: str) -> str:
    return (
        f"| {label} | {statistics.median(times):.2f} s | {min(times):.2f} s | "
        f"{max(times):.2f} s | {target} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--encoders",
        default="lite0,clip",
        help="comma list of lite0, clip, clip-int8 (an index built with --precision int8)",
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    chosen = [e for e in args.encoders.split(",") if e]
    unknown = set(chosen) - set(TARGETS)
    if unknown:
        ap.error(f"unknown encoder(s) {', '.join(sorted(unknown))}: use {', '.join(TARGETS)}")

    from embedgenre.encoders.cpu import cpu_info

    tmp = Path(tempfile.mkdtemp(prefix="predict-latency-"))
    env = {
        **os.environ,
        "EMBEDGENRE_CACHE": str(tmp / "cache"),
        "EMBEDGENRE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    poster = str(sorted((FIXTURE / "posters").glob("*.jpg"))[0])
    lines = []
    try:
        for encoder in chosen:
            index, name = prepare(encoder, tmp, env)
            base = ["predict", poster, "--index", str(index), "--json"]
            target = f"< {TARGETS[encoder]} s"
            if encoder == "clip":  # before any head is trained: zero-shot is what predict uses
                first, _ = embedgenre(*base, env=env)
                lines.append(f"| {name}: first call, no head (calibrates and saves the "
                             f"zero-shot head) | {first:.2f} s | | | once |")  # fmt: skip
                no_head = cold(base, args.runs, env)
                lines.append(row(f"{name}: cold, no head (the saved zero-shot)", no_head, target))
            embedgenre("train", str(index), "--method", "linear", "--modality", "poster",
                       "--name", "latency-linear", "--folds", "0", env=env)  # fmt: skip
            with_head = cold([*base, "--head", "latency-linear"], args.runs, env)
            lines.append(row(f"{name}: cold, saved linear head", with_head, target))
            w = warm(index, "latency-linear", poster, args.runs, env)
            lines.append(
                f"| {name}: warm (loaded Predictor) | {w * 1000:.1f} ms | | | "
                f"< {WARM_TARGET_MS} ms |"
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    cpu = cpu_info()
    print(
        f"\n`embedgenre predict` on one fixture poster, median of {args.runs}; {cpu.model}, "
        f"{cpu.cores} cores ({' '.join(cpu.kernel_features)})\n"
    )
    print("| encoder: mode | median | min | max | target |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
