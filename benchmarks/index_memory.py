"""Peak memory of `embedgenre index` writing a large embedding set.

A catalog of ``--n`` movies with plots (no posters) is indexed with a stand-in text encoder that
returns seeded random ``--dim``-d vectors at once (the model is not what is measured), with
``--faiss flat`` (the FAISS build has its own benchmark, ``large_index.py``). Measured, each in a
new process (its VmHWM is the peak of that step alone):

- first index: every plot encoded, saved chunk by chunk, then the set written in item order;
- incremental: 1% of the plots changed, so 99% of the rows are copied from the committed set
  and 1% encoded.

Printed: wall seconds, peak RSS, the size of vectors.npy, and the peak above the process's
resident size before the run (numpy, pyarrow and the catalog's item table).

    python benchmarks/index_memory.py --n 1000000
    python benchmarks/index_memory.py --n 1000000 --tree ../other-checkout   # compare a tree
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class RandomTextEncoder:
    """Seeded random unit vectors for texts: the Encoder contract, without a model."""

    family = "bench"
    modalities = ("text", "image")

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim, self.space = name, dim, name
        self._rng = np.random.default_rng(0)

    def encode_texts(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        v = self._rng.standard_normal((len(texts), self.dim), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def describe(self) -> dict:
        return {"name": self.name, "family": "bench", "dim": self.dim, "space": self.space}


def write_catalog(folder: Path, n: int, changed: int = 0) -> Path:
    """movies.csv of ``n`` movies with distinct plots; the first ``changed`` plots edited."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["imdb_id", "title", "year", "genres", "plot", "poster"])
        for i in range(n):
            edit = " (re-edited)" if i < changed else ""
            w.writerow([f"tt{i:08d}", f"Movie {i}", 1950 + i % 70, "Drama|Comedy" if i % 3 else "Horror",
                        f"A story numbered {i}, told in a few plain words{edit}.", ""])  # fmt: skip
    return folder


def vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def vm_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def one_run(tree: str, catalog: str, out: str, dim: int, result: str) -> None:
    """In a spawned child: index ``catalog`` into ``out`` with the code of ``tree``."""
    sys.path.insert(0, tree)
    from embedgenre.catalog import read_catalog
    from embedgenre.indexing import build_index

    name = f"bench:random-{dim}"
    cat = read_catalog(catalog)
    before = vm_rss()
    t0 = time.perf_counter()
    summary = build_index(
        cat, out, image_encoders=[name], text_encoders=[name],
        encoder_factory=lambda n: RandomTextEncoder(n, dim), faiss_kind="flat",
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    plot = next(s for s in summary.sets if s.modality == "plot")
    Path(result).write_text(json.dumps({
        "seconds": seconds, "peak": vm_hwm(), "before": before,
        "encoded": plot.encoded, "reused": plot.reused, "rows": plot.count,
    }))  # fmt: skip


def measure(tree: Path, catalog: Path, out: Path, dim: int, tmp: Path) -> dict:
    result = tmp / "result.json"
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=one_run, args=(str(tree), str(catalog), str(out), dim, str(result)))
    proc.start()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"the index run with {tree} failed (exit {proc.exitcode})")
    return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--tree", type=Path, action="append", default=[],
                    help="another checkout to measure too (repeatable)")  # fmt: skip
    ap.add_argument("--workdir", type=Path, default=None, help="where the catalog and index go")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="index-memory-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        first = write_catalog(tmp / "catalog", args.n)
        edited = write_catalog(tmp / "catalog-edited", args.n, changed=args.n // 100)
        print(
            f"catalogs of {args.n:,} plots written in {time.perf_counter() - t0:.0f} s", flush=True
        )
        rows = []
        for tree in [ROOT, *args.tree]:
            out = tmp / "index"
            shutil.rmtree(out, ignore_errors=True)
            for step, catalog in (("first index", first), ("1% changed", edited)):
                r = measure(tree.resolve(), catalog, out, args.dim, tmp)
                size = (next((out / "embeddings").glob("plot__*")) / "vectors.npy").stat().st_size
                rows.append((tree.name if tree != ROOT else "this tree", step, r, size))
                print(json.dumps({"tree": str(tree), "step": step, **r}), flush=True)
        print(f"\n`embedgenre index` of {args.n:,} plots, {args.dim}-d float32, `--faiss flat`; "
              f"{os.cpu_count()} CPUs\n")  # fmt: skip
        print("| tree | step | encoded | reused | seconds | peak RSS | RSS before | vectors.npy |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for tree, step, r, size in rows:
            print(f"| {tree} | {step} | {r['encoded']:,} | {r['reused']:,} | {r['seconds']:.0f} | "
                  f"{r['peak'] / 2**30:.2f} GiB | {r['before'] / 2**30:.2f} GiB | "
                  f"{size / 2**30:.2f} GiB |")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
