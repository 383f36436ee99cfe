"""CLIP on a CUDA GPU end to end: model-only, `embedgenre index --device cuda`, Ray with one GPU
actor, for ViT-B-32 and ViT-L-14; then FAISS search on the GPU. One prepared script.

Nothing large is carried to the GPU machine: the posters are made there, --n of them (default
20,000) from --sources shared posters (default 300): random crops of a shared poster at random
sizes from 182x268 to 2000x3000 (poster shaped, 2:3 give or take 10%), JPEG qualities 60-95,
some progressive JPEGs, and about 2% PNGs (both of which the GPU decoder leaves to Pillow).
Each model is a random-initialised open_clip model (the real size and speed; nothing is
downloaded) saved as ``open_clip_pytorch_model.bin`` and brought in with ``embedgenre models
import`` as a user's checkpoint. Per model, in one run:

- model-only: ``encode_pixel_tensor`` on pixels already on the device (fp16 on a GPU), batch
  --batch (default: what ``index`` picks from the card's memory);
- ``embedgenre index --device D``: the poster set's posters/s over all --n posters and over
  half of them; the steady rate is their difference, (n - n/2) / (t_n - t_n/2), which leaves
  out the fixed start (model load, CUDA context, first batches), reported beside it;
- ``embedgenre index --engine ray --workers 1 [--gpus-per-worker 1]``: the same set through a
  local Ray cluster the command starts, one encoder actor (its startup included);

next to clip-retrieval's published per-A100 figures (ViT-B/32 2,500 posters/s, decode-bound;
ViT-L/14 312/s, GPU-bound). Then exact inner-product search over --vectors random 512-d
vectors: faiss-gpu's GpuIndexFlatIP, or, without it, the same search as a torch matrix product
and top-k on the GPU (labelled as such).

    python benchmarks/gpu.py                                  # a GPU machine: 20,000 posters
    python benchmarks/gpu.py --n 200 --device cpu --models ViT-B-32   # the reduced CPU form
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "posters"
CLIP_RETRIEVAL_A100 = {"ViT-B-32": 2500.0, "ViT-L-14": 312.0}  # posters/s per A100
TARGETS = {"ViT-B-32": 5000.0, "ViT-L-14": 400.0}  # index end to end on one H100/H200


def encoder_name(arch: str) -> str:
    return f"clip:{arch}@random-bench"


# -- posters -------------------------------------------------------------------------------


def _make_one(job: tuple[str, str, int]) -> str:
    """Write one poster: a random crop of ``src`` at a random size, JPEG or PNG."""
    from PIL import Image

    src, dst, seed = job
    rng = random.Random(seed)
    width = rng.randint(182, 2000)
    height = min(3000, max(268, round(width * 1.5 * rng.uniform(0.9, 1.1))))
    with Image.open(src) as img:
        img = img.convert("RGB")
        w, h = img.size
        cw, ch = round(w * rng.uniform(0.6, 1.0)), round(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        poster = img.resize((width, height), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch))
    if dst.endswith(".png"):
        poster.save(dst, format="PNG", compress_level=1)
    else:
        quality = rng.choice((60, 75, 85, 90, 95))
        poster.save(dst, format="JPEG", quality=quality, progressive=rng.random() < 0.03)
    return dst


def make_posters(folder: Path, n: int, sources: int, seed: int = 0) -> Path:
    """A catalog of ``n`` posters made from the first ``sources`` shared ones (all cores)."""
    with open(SHARED / "movies.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:sources]
    rng = random.Random(seed)
    (folder / "posters").mkdir(parents=True, exist_ok=True)
    out, jobs = [], []
    for i in range(n):
        r = rows[rng.randrange(len(rows))]
        rel = f"posters/p{i:06d}.{'png' if rng.random() < 0.02 else 'jpg'}"
        jobs.append((str(SHARED / r["poster"]), str(folder / rel), seed * 1_000_003 + i))
        out.append({"imdb_id": f"tt9{i:07d}", "title": r["title"], "year": r["year"],
                    "genres": r["genres"], "plot": "", "poster": rel})  # fmt: skip
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_make_one, jobs, chunksize=64))
    write_catalog(folder, out)
    return folder


def write_catalog(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder


def half_catalog(full: Path, folder: Path) -> Path:
    """The first half of ``full``'s rows, posters linked."""
    with open(full / "movies.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows[: len(rows) // 2]
    (folder / "posters").mkdir(parents=True, exist_ok=True)
    for r in rows:
        os.symlink(full / r["poster"], folder / r["poster"])
    return write_catalog(folder, rows)


# -- the model -----------------------------------------------------------------------------


def import_random_model(arch: str, folder: Path, env: dict) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    del model
    embedgenre("models", "import", str(path), "--as", encoder_name(arch), env=env)
    path.unlink()


def embedgenre(*args: str, env: dict) -> tuple[float, str]:
    exe = shutil.which("embedgenre") or str(Path(sys.executable).with_name("embedgenre"))
    t0 = time.perf_counter()
    out = subprocess.run([exe, "-q", *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"embedgenre {' '.join(args[:2])} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


def model_only(arch: str, device: str, posters: list[Path], batch: int | None) -> dict:
    """Posters/s of the model on pixels already on the device, and the batch it ran."""
    import torch

    from embedgenre.encoders import create_encoder
    from embedgenre.encoders.pipeline import TensorPipeline, device_batch_size, iter_tensor_batches

    enc = create_encoder(encoder_name(arch), device=device, backend="torch")
    runner = enc._pixel_tensor_runner()
    batch = batch or device_batch_size(runner, enc.transform, device, 32)
    pipe = TensorPipeline(enc.transform, device)
    chunks = [b.pixels for b in iter_tensor_batches(posters[: batch * 4], pipe, batch)]
    pixels = torch.cat(chunks)
    x = pixels[:batch]
    while len(x) < batch:
        x = torch.cat([x, pixels[: batch - len(x)]])
    enc.encode_pixel_tensor(x)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    passes = 3 if device.startswith("cuda") else 1
    steps = max(1, min(20, (len(posters) // batch))) if device.startswith("cuda") else 2
    t0 = time.perf_counter()
    for _ in range(passes * steps):
        enc.encode_pixel_tensor(x)
    sync()
    rate = passes * steps * batch / (time.perf_counter() - t0)
    del enc, pixels, x
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"rate": rate, "batch": batch}


def index_set(catalog: Path, out: Path, arch: str, device: str, env: dict, *extra: str):
    """(posters encoded, the poster set's seconds, the command's wall seconds)."""
    shutil.rmtree(out, ignore_errors=True)
    name = encoder_name(arch)
    wall, stdout = embedgenre(
        "index", str(catalog), "--out", str(out), "--image-encoder", name, "--text-encoder",
        name, "--device", device, "--json", *extra, env=env,
    )  # fmt: skip
    poster = next(s for s in json.loads(stdout)["sets"] if s["modality"] == "poster")
    shutil.rmtree(out, ignore_errors=True)
    return poster["encoded"], poster["seconds"], wall


def run_model(arch: str, args, full: Path, half: Path, paths: list[Path], env: dict) -> dict:
    res = {"model": arch}
    import_random_model(arch, args.tmp / "download" / arch, env)
    extra = ("--batch-size", str(args.batch)) if args.batch else ()
    # a first index exports/measures nothing on a GPU, but loads the model files into the
    # page cache; it runs on the half set so both timed runs start alike
    index_set(half, args.tmp / "idx-warm", arch, args.device, env, *extra)
    m = model_only(arch, args.device, paths, args.batch)
    res["model_only"], res["batch"] = m["rate"], m["batch"]
    n_half, t_half, _ = index_set(half, args.tmp / "idx-half", arch, args.device, env, *extra)
    n_full, t_full, wall = index_set(full, args.tmp / "idx-full", arch, args.device, env, *extra)
    res["index"] = n_full / t_full
    res["index_wall"] = wall
    if t_full - t_half > 0.1 * t_full:
        res["steady"] = (n_full - n_half) / (t_full - t_half)
        res["start"] = max(0.0, t_full - n_full / res["steady"])
    else:
        res["steady"], res["start"] = float("nan"), float("nan")
    res["encoded"] = n_full
    if args.ray:
        res["ray"] = ray_index(full, args, arch, env, *extra)
    print(json.dumps(res), flush=True)
    return res


def ray_index(catalog: Path, args, arch: str, env: dict, *extra: str) -> float | str:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'embedgenre[distributed]')"
    gpus = ("--gpus-per-worker", "1") if args.device.startswith("cuda") else ()
    try:
        n, t, _ = index_set(
            catalog, args.tmp / "idx-ray", arch, args.device, env,
            "--engine", "ray", "--workers", "1", *gpus, *extra,
        )  # fmt: skip
    except RuntimeError as e:
        return f"failed: {str(e)[-300:]}"
    return n / t


# -- search --------------------------------------------------------------------------------


def gpu_search(n_vectors: int, dim: int = 512, k: int = 10) -> str:
    import faiss
    import torch

    rng = np.random.default_rng(0)
    base = rng.standard_normal((n_vectors, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(n_vectors, 1024 * 8, replace=False)]
    if not hasattr(faiss, "StandardGpuResources"):
        b, q = torch.from_numpy(base).cuda(), torch.from_numpy(queries).cuda()
        torch.topk(q[:1024] @ b.T, k, dim=1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(q), 1024):
            torch.topk(q[i : i + 1024] @ b.T, k, dim=1).indices.cpu()
        qps = len(q) / (time.perf_counter() - t0)
        return (
            "faiss has no GPU support here (pip install 'embedgenre[gpu]' for faiss-gpu); the "
            f"same exact search as a torch fp32 matrix product + top-k over {n_vectors:,} x "
            f"{dim}: {qps:,.0f} queries/s (k={k}, batch 1024)"
        )
    index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), dim)
    index.add(base)
    index.search(queries[:1024], k)
    t0 = time.perf_counter()
    for i in range(0, len(queries), 1024):
        index.search(queries[i : i + 1024], k)
    qps = len(queries) / (time.perf_counter() - t0)
    return f"GpuIndexFlatIP over {n_vectors:,} x {dim}: {qps:,.0f} queries/s (k={k}, batch 1024)"


# -- main ----------------------------------------------------------------------------------


def rate(x: float) -> str:
    """Posters/s as a table cell: whole numbers on a GPU, two decimals at CPU rates."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=20_000, help="posters to make and index")
    ap.add_argument("--sources", type=int, default=300, help="shared posters they are made from")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (the reduced form)")
    ap.add_argument("--models", default="ViT-B-32,ViT-L-14")
    ap.add_argument("--batch", type=int, default=None, help="default: index's own choice")
    ap.add_argument("--no-ray", dest="ray", action="store_false")
    ap.add_argument("--vectors", type=int, default=1_000_000, help="for the GPU search row")
    args = ap.parse_args()
    import torch

    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        print(
            f"no CUDA GPU is available to torch {torch.__version__} (CUDA build: "
            f"{torch.version.cuda}); run with --device cpu for the reduced form. Nothing measured."
        )
        raise SystemExit(0)
    from embedgenre.encoders.cpu import cpu_info

    card = torch.cuda.get_device_name(args.device) if on_gpu else "no GPU"
    cpu = cpu_info()
    print(f"device {args.device} ({card}); CPU {cpu.model}, {cpu.cores} cores; torch "
          f"{torch.__version__} (CUDA {torch.version.cuda})", flush=True)  # fmt: skip

    args.tmp = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    env = {**os.environ, "EMBEDGENRE_CACHE": str(args.tmp / "cache"), "EMBEDGENRE_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    os.environ.update(env)
    try:
        t0 = time.perf_counter()
        full = make_posters(args.tmp / "cat-full", args.n, args.sources)
        half = half_catalog(full, args.tmp / "cat-half")
        paths = sorted((full / "posters").iterdir())
        size = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{args.n} posters made from {args.sources} shared ones in "
              f"{time.perf_counter() - t0:.0f} s ({size:,.0f} MiB)", flush=True)  # fmt: skip
        results = []
        for arch in [m for m in args.models.split(",") if m]:
            try:
                results.append(run_model(arch, args, full, half, paths, env))
            except RuntimeError as e:  # one model's failure is printed, the others still run
                print(f"{arch}: {e}", flush=True)
        precision = "fp16" if on_gpu else "fp32"
        print(f"\nCLIP {precision} on {args.device} ({card}), {args.n} posters; posters/s. "
              "index: the poster set's own time; steady: from the runs on all and on half "
              "of the posters (fixed start beside it)\n")  # fmt: skip
        print(
            "| model | batch | model-only | index | index steady (fixed start) | steady / "
            "model-only | Ray, 1 actor | Ray / index | target | clip-retrieval (A100) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            ray = r.get("ray", "not run")
            ray_cell = rate(ray) if isinstance(ray, float) else ray
            ray_ratio = f"{ray / r['index']:.2f}x" if isinstance(ray, float) else ""
            print(f"| {r['model']} | {r['batch']} | {rate(r['model_only'])} | "
                  f"{rate(r['index'])} | {rate(r['steady'])} ({r['start']:.1f} s) | "
                  f"{r['steady'] / r['model_only']:.2f}x | {ray_cell} | {ray_ratio} | "
                  f"{rate(TARGETS.get(r['model'], 0))} | "
                  f"{rate(CLIP_RETRIEVAL_A100.get(r['model'], 0))} |")  # fmt: skip
        if on_gpu:
            print("\n" + gpu_search(args.vectors), flush=True)
    finally:
        shutil.rmtree(args.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
