"""Large FAISS indexes under a memory budget: choosing the kind, building IVF-PQ on disk.

:func:`choose_kind` picks a set's index from its size and a memory budget (``--index-memory``),
the way autofaiss does: the most accurate kind whose resident size fits.

============  =========================================  ===============================
kind          bytes per vector (+ ids, 8 bytes)          picked by ``auto``
============  =========================================  ===============================
flat          4 * dim (rebuilt from vectors.npy on open)  under 50,000 vectors
ivf_sq8       dim                                         under 2M vectors, if it fits
ivf_pq        m (PQ code bytes, largest m <= dim / 8      above, or when ivf_sq8 does not
              that fits the budget), OPQ when             fit the budget
              dim / m >= 16
============  =========================================  ===============================

:func:`write_set_index` builds the chosen index for a set's stored vectors and writes it beside
them. An ``ivf_pq`` index is trained once on a seeded sample, its inverted lists are filled shard
by shard (each shard a copy of the trained, empty index, sized to the budget) and the shards are
merged into one on-disk inverted-list file (``faiss.ivfdata``, memory-mapped when searched), so
neither the vectors nor the codes are ever all in memory while building. The vectors
(``vectors.npy``) stay the source of truth: the index is derived, and rebuilt when unusable.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from embedgenre import ann
from embedgenre.errors import IndexPlanError, IndexStoreError
from embedgenre.store import atomic
from embedgenre.store.reader import IVFDATA
from embedgenre.store.rows import read_row_set, read_rows

logger = logging.getLogger(__name__)

DEFAULT_MEMORY = 4 * 10**9  # bytes, "4GB"
PQ_MIN_ROWS = 2_000_000  # ivf_pq from here on, or sooner when ivf_sq8 would not fit
INDEX_FILE = "faiss.index"
ID_BYTES = 8  # an inverted list stores an int64 id beside each code
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(text: str | int | None) -> int:
    """``"4GB"`` -> 4,000,000,000 bytes; ``"512MiB"``, ``"1.5G"``, ``4000000`` also work."""
    if text is None:
        return DEFAULT_MEMORY
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(text), re.IGNORECASE)
        if m is None:
            raise IndexPlanError(
                f"The index memory {text!r} is not a size;",
                "write it like 4GB, 512MB or 1.5GiB.",
                param="index_memory",
            )
        unit = m.group(2).upper()
        value = int(float(m.group(1)) * (_BINARY[unit] if m.group(3) else _UNITS[unit]))
    if value < 64 * 2**20:
        raise IndexPlanError(
            f"The index memory {text!r} is under 64 MB, too little to train an index;",
            "give more.",
            param="index_memory",
        )
    return value


def index_bytes(kind: str, n: int, dim: int, params: dict[str, int]) -> int:
    """Estimated resident bytes of an index of ``kind`` over ``n`` vectors of ``dim``."""
    centroids = params.get("nlist", 0) * dim * 4
    if kind == "flat":
        return n * dim * 4
    if kind == "ivf_sq8":
        return n * (dim + ID_BYTES) + centroids
    if kind == "hnsw_sq8":
        return n * (dim + params.get("M", 32) * 2 * 4)
    if kind == "ivf_pq":
        code = math.ceil(params["m"] * params.get("nbits", 8) / 8)
        rotation = dim * dim * 4 if params.get("opq") else 0
        return n * (code + ID_BYTES) + centroids + rotation
    raise IndexStoreError(f"unknown FAISS index kind {kind!r}")


def check_kind(kind: str) -> tuple[str, dict[str, int]]:
    """``kind`` parsed into (kind, parameters); IndexStoreError naming the valid kinds."""
    base, given = ann.parse_kind(kind)
    if base not in ann.KINDS:
        raise IndexStoreError(
            f"unknown FAISS index kind {kind!r}; expected one of {', '.join(ann.KINDS)} "
            "(parameters as KIND:NAME=VALUE,..., e.g. ivf_pq:nlist=4096,m=64)."
        )
    return base, given


def choose_kind(
    n: int, dim: int, memory: int = DEFAULT_MEMORY, kind: str = "auto", *, budget_share=0.8
) -> str:
    """The kind string (kind and parameters) for ``n`` vectors of ``dim`` under ``memory`` bytes.

    ``kind``: "auto", or a kind to use with its default parameters filled in (``ivf_pq`` gets the
    largest code that fits). The index may take ``budget_share`` of the budget; the rest is for
    training and the query process. IndexStoreError when nothing fits, naming the budget needed.
    """
    base, given = check_kind(kind)
    allowed = memory * budget_share
    if base == "auto":
        if n < ann.FLAT_MAX_ROWS:
            return "flat"
        sq8 = ann.default_params("ivf_sq8", n, dim)
        if n < PQ_MIN_ROWS and index_bytes("ivf_sq8", n, dim, sq8) <= allowed:
            return ann.format_kind("ivf_sq8", sq8)
        base = "ivf_pq"
    params = {**ann.default_params(base, n, dim), **given}
    if "nlist" in given and "nprobe" not in given and "nprobe" in params:
        params["nprobe"] = ann.default_params(base, given["nlist"] * 64, dim)["nprobe"]
        params["nprobe"] = min(params["nprobe"], given["nlist"])
    if base == "ivf_pq" and "m" not in given:
        params["m"] = _fitting_code(n, dim, params, allowed)
        if "opq" not in given:
            params["opq"] = ann.opq_pays(dim, params["m"], n)
    if base != "flat" and index_bytes(base, n, dim, params) > allowed:
        need = index_bytes(base, n, dim, params) / budget_share
        raise IndexPlanError(
            f"a {base} index of {n:,} x {dim} vectors ({ann.format_kind(base, params)}) needs "
            f"about {need / 1e9:.1f} GB but the index memory is {memory / 1e9:.1f} GB;",
            "give it more memory, or choose the ivf_pq kind (smaller codes).",
            param="index_memory",
        )
    return ann.format_kind(base, params)


def _fitting_code(n: int, dim: int, params: dict[str, int], allowed: float) -> int:
    """The largest PQ code (bytes a vector) of at most dim / 8 whose index fits ``allowed``."""
    m = ann.pq_bytes(dim, max(1, dim // 8))
    while m > 1:
        if index_bytes("ivf_pq", n, dim, {**params, "m": m, "opq": 1}) <= allowed:
            return m
        m = ann.pq_bytes(dim, m - 1)
    return 1


def shard_rows(dim: int, memory: int) -> int:
    """Vectors added per shard: a shard's float32 vectors take at most a quarter of the budget."""
    return int(min(2_000_000, max(10_000, memory // 4 // (dim * 4))))


def write_set_index(
    vectors: np.ndarray,
    directory: Path,
    kind: str = "auto",
    memory: int | str | None = None,
    *,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Build the FAISS index of ``vectors`` (n, d) float32 (a memory map is fine) and write it in
    ``directory``; returns what the manifest records about it: ``kind`` (kind string), ``sha256``
    of ``faiss.index``, and for on-disk indexes the size of ``faiss.ivfdata``. A ``flat`` index is
    not written (it is rebuilt from the vectors when opened). ``device``: where IVF k-means runs
    (:func:`ann.gpu_kmeans`: a CUDA GPU with faiss-gpu, else the CPU)."""
    memory = parse_memory(memory)
    n, dim = vectors.shape
    chosen = choose_kind(n, dim, memory, kind)
    base, params = ann.parse_kind(chosen)
    meta: dict = {"kind": chosen}
    if base == "flat":
        return meta
    path = Path(directory) / INDEX_FILE
    if base == "ivf_pq":
        build_ivfpq_on_disk(vectors, path, params, memory, seed=seed, device=device)
        meta["ivfdata_bytes"] = (path.parent / IVFDATA).stat().st_size
    else:
        index, chosen = ann.build_faiss_index(
            np.asarray(vectors), kind=chosen, seed=seed, train_device=device
        )
        with atomic.open_for_write(path, "wb") as f:
            ann.save_faiss_index(index, f)
    with open(path, "rb") as f:  # checked before FAISS parses the file
        meta["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    meta["memory"] = memory
    return meta


def train_ivfpq(vectors: np.ndarray, params: dict[str, int], *, seed: int = 0, device: str = "cpu"):
    """An empty ``ivf_pq`` index trained on a seeded sample of ``vectors`` (rows read in order,
    so a memory map is read once): ~40 points per cell, at least 20,000 (PQ needs 256 x 39).
    ``device``: where the coarse k-means runs (:func:`ann.gpu_kmeans`)."""
    n, dim = vectors.shape
    index = ann.empty_ivfpq(dim, n, params)
    ann.gpu_kmeans(index, device)
    size = min(n, max(20_000, 40 * params["nlist"]))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    sample = read_row_set(vectors, rows)
    t0 = time.perf_counter()
    index.train(sample)
    logger.info(
        "trained %s on %d vectors in %.1f s",
        ann.ivfpq_factory(params),
        size,
        time.perf_counter() - t0,
    )
    return index


def build_ivfpq_on_disk(
    vectors: np.ndarray,
    path: Path,
    params: dict[str, int],
    memory: int = DEFAULT_MEMORY,
    *,
    seed: int = 0,
    rows_per_shard: int | None = None,
    trained=None,
    device: str = "cpu",
) -> None:
    """Write an ``ivf_pq`` index of ``vectors`` to ``path`` with its inverted lists in
    ``faiss.ivfdata`` beside it; ids are row positions. Shards of ``rows_per_shard`` vectors
    (default: :func:`shard_rows`) are added to copies of the trained index, written to a
    temporary folder beside ``path``, and merged on disk. ``trained``: an empty trained index to
    fill instead of training one (it is copied, not changed)."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    path = Path(path)
    n, dim = vectors.shape
    if trained is None:
        trained = train_ivfpq(vectors, params, seed=seed, device=device)
    step = rows_per_shard or shard_rows(dim, memory)
    shards_dir = Path(tempfile.mkdtemp(prefix=".shards-", dir=path.parent))
    try:
        names = []
        for i, start in enumerate(range(0, n, step)):
            stop = min(n, start + step)
            shard = faiss.clone_index(trained)
            x = read_rows(vectors, start, stop)
            shard.add_with_ids(x, np.arange(start, stop, dtype=np.int64))
            names.append(str(shards_dir / f"shard-{i:05d}.index"))
            try:  # a temporary file: no need to make it durable
                with open(names[-1], "wb") as f:
                    ann.save_faiss_index(shard, f)
            except OSError as e:
                raise atomic.write_error(Path(names[-1]), e) from e
            del shard, x
            logger.info("ivf_pq: added rows %d-%d of %d", start, stop, n)
        merged = faiss.clone_index(trained)
        ivfdata = path.parent / IVFDATA
        ivfdata.unlink(missing_ok=True)
        # FAISS fills the inverted lists through a memory map: a full disk would be a bus error
        atomic.check_space(ivfdata, n * (merged.code_size + np.dtype(np.int64).itemsize))
        with ann.faiss_prints_to_stderr():
            merge_ondisk(merged, names, str(ivfdata))
        with atomic.open_for_write(path, "wb") as f:
            ann.save_faiss_index(merged, f)
        del merged
    finally:
        shutil.rmtree(shards_dir, ignore_errors=True)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, step: int = 200_000):
    """Brute-force top-``k`` inner products of ``queries`` over ``vectors`` read ``step`` rows at a
    time (a memory map is never loaded whole): (scores (q, k), ids (q, k) int64), best first."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for start in range(0, len(vectors), step):
        block = read_rows(vectors, start, start + step)
        s = q @ block.T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, keep, axis=1)
        best_i = np.take_along_axis(cand_i, keep, axis=1)
    return best_s, best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k ids among its found ids (both (q, k))."""
    k = truth.shape[1]
    hits = [len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k)
