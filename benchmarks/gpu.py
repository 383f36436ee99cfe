"""CLIP ViT-B-32 fp16 on a CUDA GPU, end to end, and FAISS search on the GPU.

Needs an NVIDIA GPU with a CUDA build of torch (and faiss-gpu, the ``gpu`` extra, for the search
rows); on a machine without one it says so and exits with status 0, measuring nothing.
The model is a ViT-B-32 with random weights (real size and speed; nothing is downloaded),
imported with ``embedgenre models import`` into a temporary cache, as benchmarks/clip_speed.py
does. Rows, for the first --n shared posters and the same re-encoded at 500x750:
- model-only: ``encode_pixels`` on tensors prepared beforehand (fp16 on the GPU, batch --batch);
- library loop: ``iter_image_batches`` with --workers decode threads feeding the GPU;
- ``embedgenre index --device cuda``: the poster set's time, and its steady rate without the
  fixed start (model load, CUDA context), from runs on all and on half of the posters;
- ``embedgenre index --engine ray --gpus-per-worker 1`` (shared size; when Ray is installed):
  the same through a local Ray cluster started by the command, its startup included;
next to clip-retrieval's published figure of 2,500 posters/s per A100 for ViT-B/32, which is
bound by image decoding and resizing. Then exact inner-product search (IndexFlatIP) on the GPU
over --vectors random 512-d vectors: queries/s for batches of 1,024 queries, k=10 (with
faiss-gpu; without it, the same exact search as a torch matrix product and top-k on the GPU,
labelled as such).

    python benchmarks/gpu.py --n 5000 --workers 8 [--posters DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clip_speed  # noqa: E402
from clip_speed import NAME, embedgenre, make_catalog, save_random_vit  # noqa: E402

from embedgenre.encoders.batching import gpu_decode_workers  # noqa: E402

CLIP_RETRIEVAL_A100 = 2500.0  # posters/s per A100, ViT-B/32 (clip-retrieval's README)


def gpu_or_exit() -> str:
    import torch

    if not torch.cuda.is_available():
        print(
            f"no CUDA GPU is available to torch {torch.__version__} (CUDA build: "
            f"{torch.version.cuda}); benchmarks/gpu.py needs one. Nothing was measured."
        )
        raise SystemExit(0)
    return torch.cuda.get_device_name(0)


def model_only(pixels: np.ndarray, batch: int, passes: int = 5) -> float:
    import torch

    from embedgenre.encoders import create_encoder

    enc = create_encoder(NAME, device="cuda")
    enc.encode_pixels(pixels[:batch])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(passes):
        for i in range(0, len(pixels), batch):
            enc.encode_pixels(pixels[i : i + batch])
    torch.cuda.synchronize()
    return passes * len(pixels) / (time.perf_counter() - t0)


def library_loop(paths: list[Path], batch: int, workers: int) -> float:
    from embedgenre.encoders import create_encoder, iter_image_batches

    enc = create_encoder(NAME, device="cuda")
    t0 = time.perf_counter()
    n = 0
    for pixels, rows, _ in iter_image_batches(
        paths, enc.transform, batch_size=batch, workers=workers,
        draft_size=enc.transform.draft_size, prefetch_batches=4,
    ):  # fmt: skip
        if rows:
            enc.encode_pixels(pixels)
            n += len(rows)
    return n / (time.perf_counter() - t0)


def index_seconds(catalog: Path, out: Path, batch: int, env: dict) -> tuple[int, float]:
    """(posters, seconds of the poster set) of ``embedgenre index --device cuda``."""
    shutil.rmtree(out, ignore_errors=True)
    _, stdout = embedgenre(
        "index", str(catalog), "--out", str(out), "--image-encoder", NAME,
        "--text-encoder", NAME, "--device", "cuda", "--batch-size", str(batch), "--json", env=env,
    )  # fmt: skip
    poster = next(s for s in json.loads(stdout)["sets"] if s["modality"] == "poster")
    return poster["count"], poster["seconds"]


def ray_index(catalog: Path, out: Path, batch: int, env: dict) -> str:
    """``embedgenre index --engine ray`` with one GPU actor: posters/s of the poster set and the
    command's wall seconds (the local Ray cluster's startup included), or why it did not run."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'embedgenre[distributed]')"
    try:
        wall, stdout = embedgenre(
            "index", str(catalog), "--out", str(out), "--image-encoder", NAME,
            "--text-encoder", NAME, "--engine", "ray", "--workers", "1", "--gpus-per-worker", "1",
            "--batch-size", str(batch), "--json", env=env,
        )  # fmt: skip
    except SystemExit as e:  # the command's own error, printed rather than ending the benchmark
        return f"failed: {e}"
    poster = next(s for s in json.loads(stdout)["sets"] if s["modality"] == "poster")
    return (
        f"{poster['count'] / poster['seconds']:.0f} posters/s over {poster['count']} posters; "
        f"the whole command {wall:.1f} s, starting a local Ray cluster included"
    )


def torch_gpu_search(base: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Queries/s of exact inner-product top-k as a fp32 matrix product on the GPU."""
    import torch

    b = torch.from_numpy(base).cuda()
    q = torch.from_numpy(queries).cuda()
    torch.topk(q[:1024] @ b.T, k, dim=1)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(q), 1024):
        torch.topk(q[i : i + 1024] @ b.T, k, dim=1).indices.cpu()
    return len(q) / (time.perf_counter() - t0)


def faiss_gpu_search(n_vectors: int, dim: int = 512, k: int = 10) -> str:
    import faiss

    rng = np.random.default_rng(0)
    base = rng.standard_normal((n_vectors, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(n_vectors, 1024 * 8, replace=False)]
    if not hasattr(faiss, "StandardGpuResources"):
        qps = torch_gpu_search(base, queries, k)
        return (
            "faiss has no GPU support here (pip install 'embedgenre[gpu]' for faiss-gpu); "
            f"the same exact search as a torch fp32 matrix product + top-k over {n_vectors:,} x "
            f"{dim}: {qps:,.0f} queries/s (k={k}, batch 1024)"
        )
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(res, dim)
    index.add(base)
    index.search(queries[:1024], k)
    t0 = time.perf_counter()
    for i in range(0, len(queries), 1024):
        _, ids = index.search(queries[i : i + 1024], k)
    qps = len(queries) / (time.perf_counter() - t0)
    return f"GpuIndexFlatIP over {n_vectors:,} x {dim}: {qps:,.0f} queries/s (k={k}, batch 1024)"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=5000, help="posters per size (<= 6,274)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=gpu_decode_workers())
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument(
        "--posters", type=Path, default=clip_speed.DATA,
        help="a folder of posters with their movies.csv (default: the shared posters)",
    )  # fmt: skip
    args = ap.parse_args()
    device_name = gpu_or_exit()
    clip_speed.DATA = DATA = args.posters.resolve()  # make_catalog links posters from here

    tmp = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    env = {**os.environ, "EMBEDGENRE_CACHE": str(tmp / "cache"), "EMBEDGENRE_OFFLINE": "1"}
    os.environ.update(env)
    try:
        ckpt = save_random_vit(tmp / "download")
        embedgenre("models", "import", str(ckpt), "--as", NAME, env=env)
        with open(DATA / "movies.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[: args.n]
        from embedgenre.encoders import create_encoder
        from embedgenre.images import load_image

        prep = create_encoder(NAME, device="cuda")
        pixels = np.stack([prep.transform(load_image(DATA / r["poster"])) for r in rows[:2048]])
        del prep
        # the set's time includes the process's fixed start (model load, CUDA context); a run on
        # half the posters separates it from the steady rate
        half = make_catalog(rows[: len(rows) // 2], tmp / "cat-half", None)
        n_half, t_half = index_seconds(half, tmp / "idx-half", args.batch, env)
        results, start = [], None
        for size, dims in (("shared", None), ("500x750", (500, 750))):
            cat = make_catalog(rows, tmp / f"cat-{size}", dims)
            paths = [cat / r["poster"] for r in rows]
            res = {"size": size, "model": model_only(pixels, args.batch)}
            res["loop"] = library_loop(paths, args.batch, args.workers)
            n_full, t_full = index_seconds(cat, tmp / f"idx-{size}", args.batch, env)
            if start is None:  # fixed start, from the shared-size runs at two sizes
                # where twice the posters take under 10% longer, the start hides the rate
                resolved = t_full - t_half > 0.1 * t_full
                rate = (n_full - n_half) / (t_full - t_half) if resolved else float("inf")
                start = max(0.0, t_full - n_full / rate)
            res["index"] = n_full / t_full
            res["index_steady"] = n_full / (t_full - start) if t_full - start > 0.1 * t_full else 0
            results.append(res)
            print(json.dumps(res), flush=True)
        print(f"\nCLIP ViT-B-32 fp16 on {device_name}, {args.n} posters, batch {args.batch}, "
              f"{args.workers} decode threads; posters/s. `embedgenre index` "
              f"(--device cuda): the poster set's own time, then without its fixed start of "
              f"{start:.1f} s (model load, CUDA context; from runs on {n_half} and {args.n} "
              "posters)\n")  # fmt: skip
        print("| size | model-only | library loop | embedgenre index | index, steady (0: "
              "hidden by the start; use more posters) | "
              "clip-retrieval (A100) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['size']} | {r['model']:.0f} | {r['loop']:.0f} | "
                  f"{r['index']:.0f} | {r['index_steady']:.0f} | "
                  f"{CLIP_RETRIEVAL_A100:.0f} |")  # fmt: skip
        print("\n" + faiss_gpu_search(args.vectors), flush=True)
        shared = tmp / "cat-shared"
        print("\nindex --engine ray, 1 GPU actor, shared size: "
              + ray_index(shared, tmp / "idx-ray", args.batch, env))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
