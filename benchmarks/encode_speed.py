"""Encoding speed on this CPU: model-only vs end-to-end, eager PyTorch vs ONNX Runtime.

For each offline image encoder (EfficientNet-Lite0/1/2) and backend, in one run:
- model-only: posters/s of ``encode_pixels`` on pre-decoded, preprocessed tensors;
- end-to-end: posters/s reading, decoding and resizing the files (``iter_image_batches``, decode
  threads overlapping the model) and encoding them;
- ratio end-to-end / model-only (target >= 0.85) and ONNX / eager speedup;
- the model's FLOPs per poster (torch.utils.flop_counter), this CPU's fp32 matmul GFLOP/s measured
  now, and posters/s as a fraction of the FLOP-bound limit (matmul GFLOP/s / GFLOP per poster).
MiniLM plots/s (tokenise + encode) for both backends follows.

    python benchmarks/encode_speed.py --n 256
Timings are noisy on a shared machine: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "posters"


def matmul_gflops(size: int = 1024, repeats: int = 8) -> float:
    """Best fp32 matmul GFLOP/s of torch on this CPU (all cores), as the compute roof."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


def gflops_per_image(variant: str) -> float:
    """Forward FLOPs of one poster through the feature extractor (conv/matmul FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from embedgenre.encoders.cnn import (
        _packaged_path,
        build_model,
        pooled_features,
        transform_for,
    )

    t = transform_for(variant)
    module = pooled_features(build_model(variant, _packaged_path(variant)))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(1, 3, t.out_height, t.size))
    return counter.get_total_flops() / 1e9


def time_model_only(enc, pixels: np.ndarray, batch: int) -> float:
    enc.encode_pixels(pixels[:batch])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(pixels), batch):
        enc.encode_pixels(pixels[i : i + batch])
    return len(pixels) / (time.perf_counter() - t)


def time_end_to_end(enc, paths: list[Path], batch: int, workers: int | None) -> float:
    from embedgenre.encoders import iter_image_batches

    enc.encode_pixels(np.stack([enc.preprocess(_img(paths[0]))] * 2))  # warm-up
    t = time.perf_counter()
    done = 0
    for pixels, rows, _ in iter_image_batches(
        paths,
        enc.preprocess,
        batch_size=batch,
        workers=workers,
        draft_size=enc.transform.draft_size,
    ):
        enc.encode_pixels(pixels)
        done += len(rows)
    return done / (time.perf_counter() - t)


def _img(path: Path):
    from embedgenre.images import load_image

    return load_image(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="posters for ONNX Runtime (default 256)")
    p.add_argument("--n-torch", type=int, default=64, help="posters for eager PyTorch (slow)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="decode threads (default: auto)")
    p.add_argument(
        "--encoders", default="lite0,lite1,lite2", help="comma list of lite0,lite1,lite2"
    )
    p.add_argument("--texts", type=int, default=256, help="plots for MiniLM (0 to skip)")
    p.add_argument("--data", type=Path, default=DATA, help="folder with movies.csv and posters/")
    args = p.parse_args()

    os.environ.setdefault("EMBEDGENRE_CACHE", str(Path(tempfile.gettempdir()) / "embedgenre-bench"))
    import torch
    from rich.console import Console
    from rich.table import Table

    from embedgenre.encoders import create_encoder

    paths = sorted((args.data / "posters").glob("*.jpg"))[: max(args.n, args.n_torch)]
    if not paths:
        raise SystemExit(f"no posters under {args.data / 'posters'}")
    roof = matmul_gflops()
    console = Console(width=150)
    console.print(
        f"{len(paths)} posters from {args.data}; {os.cpu_count()} CPUs; torch threads "
        f"{torch.get_num_threads()}; fp32 matmul roof {roof:.1f} GFLOP/s (measured now)"
    )

    table = Table(title="image encoders: posters/s")
    for col in (
        "encoder",
        "backend",
        "n",
        "model-only/s",
        "end-to-end/s",
        "e2e/model",
        "vs eager",
        "GFLOP/poster",
        "% of FLOP bound",
    ):
        table.add_column(col, justify="right" if col not in ("encoder", "backend") else "left")
    for short in args.encoders.split(","):
        variant = f"efficientnet-{short.strip()}"
        name = f"cnn:{variant}"
        gf = gflops_per_image(variant)
        eager = None
        for backend, n in (("torch", args.n_torch), ("onnx", args.n)):
            enc = create_encoder(name, backend=backend)
            sub = paths[:n]
            pixels = np.stack([enc.preprocess(_img(q)) for q in sub])
            model_only = time_model_only(enc, pixels, args.batch)
            e2e = time_end_to_end(enc, sub, args.batch, args.workers)
            if backend == "torch":
                eager = model_only
            table.add_row(
                name,
                backend,
                str(n),
                f"{model_only:.1f}",
                f"{e2e:.1f}",
                f"{e2e / model_only:.2f}",
                f"{model_only / eager:.1f}x",
                f"{gf:.2f}",
                f"{100 * model_only * gf / roof:.0f}%",
            )
    console.print(table)

    if args.texts:
        with open(args.data / "movies.csv", newline="", encoding="utf-8") as f:
            plots = [r["plot"] for r in csv.DictReader(f) if r.get("plot")][: args.texts]
        t2 = Table(title="st:all-MiniLM-L6-v2: plots/s (tokenise + encode)")
        for col in ("backend", "batch", "n", "plots/s", "vs eager"):
            t2.add_column(col)
        eager: dict[int, float] = {}
        for backend in ("torch", "onnx"):
            enc = create_encoder("st:all-MiniLM-L6-v2", backend=backend)
            enc.encode_texts(plots[:8])
            for batch in (16, 64):  # the index uses 16: padding to the longest text costs
                t = time.perf_counter()
                enc.encode_texts(plots, batch_size=batch)
                rate = len(plots) / (time.perf_counter() - t)
                eager.setdefault(batch, rate)
                t2.add_row(
                    backend,
                    str(batch),
                    str(len(plots)),
                    f"{rate:.1f}",
                    f"{rate / eager[batch]:.2f}x",
                )
        console.print(t2)
        # `index` encodes plots in groups of 128 (checkpoints); each group is batched longest
        # first, so the order of the groups decides how much padding a batch carries.
        t3 = Table(title="st:all-MiniLM-L6-v2 (onnx, batch 16) in groups of 128: plots/s")
        for col in ("plots ordered", "n", "plots/s"):
            t3.add_column(col)
        for label, ordered in (
            ("as in the catalog", plots),
            ("longest first (what index does)", sorted(plots, key=len, reverse=True)),
        ):
            t = time.perf_counter()
            for start in range(0, len(ordered), 128):
                enc.encode_texts(ordered[start : start + 128], batch_size=16)
            t3.add_row(label, str(len(ordered)), f"{len(ordered) / (time.perf_counter() - t):.1f}")
        console.print(t3)


if __name__ == "__main__":
    main()
