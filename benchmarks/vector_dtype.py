"""float16 vector storage on a real index: what `index --vectors float16` changes for `similar`.

A copy of an index (default ``indexes/posters-dev``, the shared posters) is rewritten with its
vectors stored as float16 (nothing is re-encoded), then every item is asked for its 10 most
similar items by poster, by plot and by both, in the float32 original and in the float16 copy:
recall@10 of the copy's neighbours against the original's, the share of identical top-10 lists,
the largest change of a reported score (a cosine by poster or plot, the fused score by both), the
bytes of the vectors on disk, and the time the conversion took.

    python benchmarks/vector_dtype.py [--index indexes/posters-dev] [--limit 2000]

The synthetic 1M/10M counterpart (exact search on rounded vectors) is in ``large_index.py``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from embedgenre.catalog import read_catalog
from embedgenre.indexing import build_index
from embedgenre.retrieval import open_retriever
from embedgenre.store import GenreIndex

ROOT = Path(__file__).resolve().parents[1]


def vector_bytes(index_dir: Path) -> int:
    idx = GenreIndex.open(index_dir)
    return sum((s.directory / "vectors.npy").stat().st_size for s in idx.sets)


def neighbours(retriever, ids, by):
    """Per item id: (neighbour ids, their cosines by this ``by``) of ``similar``."""
    out = {}
    for item in ids:
        try:
            res = retriever.similar(item_id=item, k=10, by=by)
        except Exception:  # an item without a vector of this modality
            continue
        out[item] = [(n.id, n.score) for n in res.neighbours]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--index", type=Path, default=ROOT / "indexes" / "posters-dev")
    ap.add_argument("--limit", type=int, default=2000, help="query items (every item: 0)")
    args = ap.parse_args()
    source = GenreIndex.open(args.index)
    catalog_root = Path(source.manifest.catalog["path"])
    with tempfile.TemporaryDirectory(prefix="eg-dtype-") as tmp:
        copy = Path(tmp) / "index"
        shutil.copytree(args.index, copy)
        t0 = time.perf_counter()
        summary = build_index(read_catalog(catalog_root), copy, vector_dtype="float16")
        seconds = time.perf_counter() - t0
        encoded = sum(s.encoded for s in summary.sets)
        full, half = open_retriever(args.index), open_retriever(copy)
        ids = list(source.ids)
        if args.limit:
            ids = ids[: args.limit]
        table = Table(
            "by", "queries", "recall@10 vs float32", "identical top-10", "max |score change|",
            title=f"float16 vectors: {args.index.name}, {len(ids)} query items",
        )  # fmt: skip
        for by in ("poster", "plot", "both"):
            a, b = neighbours(full, ids, by), neighbours(half, ids, by)
            common = [i for i in a if i in b]
            recall = np.mean([len({n for n, _ in a[i]} & {n for n, _ in b[i]}) / max(1, len(a[i]))
                              for i in common])  # fmt: skip
            same = np.mean([[n for n, _ in a[i]] == [n for n, _ in b[i]] for i in common])
            change = max(
                (
                    abs(sa - sb)
                    for i in common
                    for (na, sa), (nb, sb) in zip(a[i], b[i])
                    if na == nb
                ),
                default=0.0,
            )
            table.add_row(by, str(len(common)), f"{recall:.4f}", f"{same:.3f}", f"{change:.5f}")
        console = Console(width=150)
        console.print(table)
        console.print(
            f"vectors on disk: float32 {vector_bytes(args.index) / 1e6:.1f} MB, float16 "
            f"{vector_bytes(copy) / 1e6:.1f} MB; conversion {seconds:.1f} s, {encoded} encoded"
        )


if __name__ == "__main__":
    main()
