"""CLIP ViT-B-32 at full size on this CPU: `embedgenre index` against the loop a user would write.

A ViT-B-32 with random weights (the size and speed of the real one; open_clip builds it with
``pretrained=None``, nothing is downloaded) is saved as ``open_clip_pytorch_model.bin`` and
brought in with ``embedgenre models import`` like a user's checkpoint, into a temporary cache.
The first --n posters of ../shared/data/posters are used as they are (<= 224 px) and re-encoded
at 500x750 (TMDB w500) and 2000x3000 (originals) into the same temporary folder. In ONE run,
for every size:
- plain: the open_clip eager loop (DataLoader batch 32, num_workers=1, torch.set_num_threads(2),
  open_clip's own preprocess, ``model.encode_image``);
- model-only per backend (ONNX Runtime, torch eager): ``encode_pixels`` on tensors prepared
  beforehand, the best a loop over that backend can do;
- ``embedgenre index`` per backend (auto, onnx, torch): posters/s of the poster set (encoder
  load, decode, resize, thumbnails, encode, checkpoints; the plain loop's time also counts
  loading its checkpoint) and the whole process wall time, after one small first index that
  exported the towers and measured the backends;
- the FLOP-bound limit: FLOPs per poster counted, fp32 matmul rate measured in the same run.
The latency of `embedgenre predict` on a CLIP index is measured by predict_latency.py.

    python benchmarks/clip_speed.py               # --n 1000
    python benchmarks/clip_speed.py --n 200 --sizes shared
Timings are noisy on a shared machine: compare the ratios printed, which come from one run.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode_speed import matmul_gflops  # noqa: E402 (a sibling script)

NAME = "clip:ViT-B-32@random-bench"
SIZES = {"shared": None, "500x750": (500, 750), "2000x3000": (2000, 3000)}


def save_random_vit(folder: Path) -> Path:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return path


def make_catalog(rows: list[dict], folder: Path, size: tuple[int, int] | None) -> Path:
    """A catalog of ``rows`` without plots; posters linked (shared) or re-encoded at ``size``."""
    from PIL import Image

    (folder / "posters").mkdir(parents=True, exist_ok=True)
    out = []
    for r in rows:
        src = DATA / r["poster"]
        dst = folder / r["poster"]
        if not dst.exists():
            if size is None:
                os.symlink(src, dst)
            else:
                with Image.open(src) as img:
                    img.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(dst, quality=90)
        out.append({"imdb_id": r["imdb_id"], "title": r["title"], "genres": r["genres"],
                    "poster": r["poster"], "plot": ""})  # fmt: skip
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    return folder


def plain_loop(paths: list[Path], ckpt: Path) -> float:
    """Posters/s of the open_clip eager loop a user would write, loading the checkpoint included
    (as the index's set time includes loading the encoder)."""
    import open_clip
    import torch
    from PIL import Image

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt))
    model.eval()

    class Posters(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return preprocess(Image.open(paths[i]).convert("RGB"))

    loader = torch.utils.data.DataLoader(Posters(), batch_size=32, num_workers=1)
    with torch.no_grad():
        for batch in loader:
            model.encode_image(batch)
    return len(paths) / (time.perf_counter() - t0)


def model_only(backend: str, pixels: np.ndarray, env: dict) -> float:
    """Posters/s of ``encode_pixels`` on ready tensors, in a fresh process (its own threads)."""
    np.save(env["BENCH_TMP"] + "/pixels.npy", pixels)
    code = (
        "import numpy as np, time, sys\n"
        "from embedgenre.encoders import create_encoder\n"
        f"enc = create_encoder({NAME!r}, backend={backend!r})\n"
        f"x = np.load({env['BENCH_TMP'] + '/pixels.npy'!r})\n"
        "enc.encode_pixels(x[:32])\n"
        "t0 = time.perf_counter()\n"
        "for i in range(0, len(x), 32): enc.encode_pixels(x[i:i + 32])\n"
        "print(len(x) / (time.perf_counter() - t0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def embedgenre(*args: str, env: dict) -> tuple[float, str]:
    exe = shutil.which("embedgenre") or str(Path(sys.executable).with_name("embedgenre"))
    t0 = time.perf_counter()
    out = subprocess.run([exe, "-q", *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"embedgenre {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


def index_run(catalog: Path, out: Path, backend: str, env: dict) -> tuple[float, float, dict]:
    """(posters/s of the poster set, process wall seconds, the set's encoder record).
    ``backend``: an `index --backend` value, or BACKEND+PRECISION (e.g. ``auto+int8``)."""
    shutil.rmtree(out, ignore_errors=True)
    backend, _, precision = backend.partition("+")
    wall, stdout = embedgenre(
        "index", str(catalog), "--out", str(out), "--image-encoder", NAME,
        "--text-encoder", NAME, "--backend", backend, "--precision", precision or "fp32",
        "--json", env=env,
    )  # fmt: skip
    summary = json.loads(stdout)
    poster = next(s for s in summary["sets"] if s["modality"] == "poster")
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(s for s in manifest["sets"] if s["modality"] == "poster")
    return poster["count"] / poster["seconds"], wall, entry["encoder"]


def flops_per_image() -> float:
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.encode_image(torch.zeros(1, 3, 224, 224))
    return counter.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1000, help="posters per size")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma list of " + ", ".join(SIZES))
    ap.add_argument(
        "--backends",
        default="auto,onnx,torch",
        help="embedgenre index backends; BACKEND+PRECISION adds a reduced precision, e.g. auto+int8",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    sizes = [s for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]

    tmp = Path(tempfile.mkdtemp(prefix="clip-speed-"))
    env = {
        **os.environ,
        "EMBEDGENRE_CACHE": str(tmp / "cache"),
        "EMBEDGENRE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "BENCH_TMP": str(tmp),
    }
    os.environ.update(env)  # this process encodes too (preprocessing, the plain loop)
    try:
        import torch

        from embedgenre.encoders.cpu import cpu_info

        cpu = cpu_info()
        print(f"CPU: {cpu.model}, {cpu.cores} cores, {' '.join(cpu.kernel_features)}")
        ckpt = save_random_vit(tmp / "download")
        t, _ = embedgenre("models", "import", str(ckpt), "--as", NAME, env=env)
        print(f"models import of a {ckpt.stat().st_size / 1e6:.0f} MB checkpoint: {t:.1f} s")
        with open(DATA / "movies.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[: args.n]
        gflop = flops_per_image()
        torch.set_num_threads(cpu.cores)
        roof = matmul_gflops()
        limit = roof / gflop
        print(
            f"{gflop:.2f} GFLOP per poster; fp32 matmul {roof:.1f} GFLOP/s -> limit {limit:.1f}/s"
        )

        from embedgenre.encoders import create_encoder
        from embedgenre.images import load_image

        prep = create_encoder(NAME, backend="onnx", purpose="query")
        pixels = np.stack([prep.transform(load_image(DATA / r["poster"])) for r in rows[:256]])
        del prep

        # the first use exports both towers and measures the backends (once per CPU, cached)
        warm = make_catalog(rows[:32], tmp / "cat-warmup", None)
        t, _ = embedgenre("index", str(warm), "--out", str(tmp / "idx-warmup"),
                          "--image-encoder", NAME, "--text-encoder", NAME, "--json", env=env)  # fmt: skip
        print(
            f"first index (32 posters: ONNX export of both towers + backend measurement): {t:.0f} s"
        )
        table = []
        first_index = None
        for size in sizes:
            t0 = time.perf_counter()
            cat = make_catalog(rows, tmp / f"cat-{size}", SIZES[size])
            paths = [cat / r["poster"] for r in rows]
            made = time.perf_counter() - t0
            print(f"\n[{size}] catalog ready ({made:.0f} s)", flush=True)
            res = {"size": size, "plain": plain_loop(paths, ckpt)}
            for b in ("onnx", "torch"):
                res[f"model {b}"] = model_only(b, pixels, env)
            for b in backends:
                rate, wall, info = index_run(cat, tmp / f"idx-{size}-{b}", b, env)
                res[f"index {b}"] = rate
                res[f"wall {b}"] = wall
                res[f"ran {b}"] = info.get("backend")
                if first_index is None:
                    first_index = (tmp / f"idx-{size}-{b}", info)
            table.append(res)
            print(json.dumps(res), flush=True)

        print(f"\n`embedgenre index` with {NAME} (random ViT-B-32), {args.n} posters per size, "
              f"{cpu.model}, {cpu.cores} cores; posters/s (FLOP-bound limit {limit:.1f}/s)\n")  # fmt: skip
        head = ["size", "plain open_clip loop", "model-only onnx", "model-only torch"]
        head += [f"index {b} (ran)" for b in backends]
        fp32 = [b for b in backends if "+" not in b] or backends  # model-only loops are fp32
        head += [f"index {b} / plain" for b in backends] + ["best fp32 index / best model-only"]
        head += ["best fp32 index % of limit"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in table:
            best_model = max(r["model onnx"], r["model torch"])
            best_index = max(r[f"index {b}"] for b in fp32)
            cells = [r["size"], f"{r['plain']:.1f}", f"{r['model onnx']:.1f}",
                     f"{r['model torch']:.1f}"]  # fmt: skip
            cells += [f"{r[f'index {b}']:.1f} ({r[f'ran {b}']})" for b in backends]
            cells += [f"{r[f'index {b}'] / r['plain']:.2f}x" for b in backends]
            cells += [f"{best_index / best_model:.2f}x", f"{100 * best_index / limit:.0f}%"]
            print("| " + " | ".join(cells) + " |")
        print("\nprocess wall seconds (imports, model load, export/measurement when first, "
              "encode, commit): " + "; ".join(
                  f"{r['size']} " + ", ".join(f"{b} {r[f'wall {b}']:.0f} s" for b in backends)
                  for r in table))  # fmt: skip
        if first_index is not None:
            idx, info = first_index
            print(
                f"backend choice recorded in the manifest: {json.dumps(info.get('backend_choice'))}"
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
