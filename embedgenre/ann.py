"""FAISS indexes over L2-normalised float32 vectors (inner product = cosine).

Which index, by size (``kind="auto"``):

- fewer than ``FLAT_MAX_ROWS`` (50,000) vectors: ``flat``, exact inner product. A query scans
  every vector; at 50k x 512 that is ~25M multiply-adds, a few ms on one core.
- more: ``ivf_sq8``, an inverted file over ``nlist ~ 2 sqrt(n)`` k-means cells (rounded to a power
  of two) with 8-bit scalar-quantised vectors (1 byte per dimension: 1M x 512 takes ~0.5 GB instead
  of 2 GB flat). It trains and adds 1M vectors in well under a minute on 2 cores; a query scans
  ``nprobe`` cells. Retrieval re-scores candidates with the exact stored vectors, so the 8-bit
  codes only decide which candidates are looked at.
- ``hnsw_sq8`` (asked for explicitly): an HNSW graph over the same 8-bit codes. Fast queries, but
  the graph takes minutes to build at 1M on 2 cores, so ``auto`` does not pick it.
- ``ivf_pq``: an inverted file over product-quantised codes (``m`` bytes a vector with
  ``nbits=8``), after an OPQ rotation when ``opq=1``: 10M x 512 in well under 1 GB. Built here in
  memory; :mod:`embedgenre.ivfpq` chooses it for large sets under a memory budget and fills its
  inverted lists in shards merged on disk.

The kind string returned by :func:`build_faiss_index` names the kind and its parameters, e.g.
``"ivf_sq8:nlist=2048,nprobe=32"``; :func:`describe_faiss` reads the same from a loaded index.
Search-time parameters (``nprobe``, ``ef_search``) are stored in the index file and can be changed
with :func:`set_search_params`.

FAISS's contract for missing neighbours is kept everywhere: row id ``-1`` with score ``-inf``.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.errors import FaissGpuError, IndexStoreError

logger = logging.getLogger(__name__)

FLAT_MAX_ROWS = 50_000
OPQ_MIN_ROWS = 10_000  # an OPQ rotation trains 256-centroid quantisers: it needs many vectors
OPQ_ITERATIONS = 20  # faiss's default 50 takes minutes on 2 cores for little more recall
KINDS = ("auto", "flat", "ivf_sq8", "hnsw_sq8", "ivf_pq")
DEVICES = ("cpu", "cuda")  # "cuda:N" picks GPU N


def auto_kind(n: int, flat_max_rows: int = FLAT_MAX_ROWS) -> str:
    """The kind ``auto`` picks for ``n`` vectors."""
    return "flat" if n < flat_max_rows else "ivf_sq8"


def default_params(kind: str, n: int, dim: int = 512) -> dict[str, int]:
    """Build and search parameters used when the caller gives none (``n`` vectors of ``dim``)."""
    if kind == "ivf_pq":
        nlist = 2 ** round(math.log2(max(math.sqrt(max(n, 1)), 16)))
        nlist = max(1, min(nlist, n // 39 or 1))
        m = pq_bytes(dim, dim // 8)
        return {
            "nlist": nlist,
            # re-scored recall@10 0.998 at 1M (nlist 1024, nprobe 16) and 0.979 at 10M (4096, 64)
            "nprobe": min(nlist, max(16, nlist // 64)),
            "m": m,
            "nbits": 8,
            "opq": opq_pays(dim, m, n),
        }
    if kind == "ivf_sq8":
        nlist = 2 ** round(math.log2(max(2 * math.sqrt(max(n, 1)), 16)))
        nlist = max(1, min(nlist, n // 39 or 1))  # k-means wants ~39 training points per cell
        return {"nlist": nlist, "nprobe": min(nlist, max(16, nlist // 64))}
    if kind == "hnsw_sq8":
        return {"M": 32, "ef_construction": 40, "ef_search": 128}
    return {}


def pq_bytes(dim: int, at_most: int) -> int:
    """The largest PQ code size (sub-quantisers) that divides ``dim`` and is at most ``at_most``
    (at least 1)."""
    for m in range(max(1, min(at_most, dim)), 0, -1):
        if dim % m == 0:
            return m
    return 1


def opq_pays(dim: int, m: int, n: int) -> int:
    """1 when an OPQ rotation is worth training for PQ codes of ``m`` bytes over ``dim``: wide
    sub-vectors (16+ dimensions each) lose most to a poor split of the dimensions. At 8
    dimensions each it added 0.03 to recall@10 for 5x the training time in our runs, and the
    exact re-scoring of candidates recovers that anyway."""
    return int(dim // m >= 16 and n >= OPQ_MIN_ROWS)


def ivfpq_factory(params: dict[str, int]) -> str:
    """The faiss factory string of an ``ivf_pq`` kind, e.g. ``"OPQ64,IVF4096,PQ64x8np"``
    (``np``: no polysemous training, which takes minutes and only serves Hamming filtering)."""
    m, nbits = params["m"], params["nbits"]
    rotation = f"OPQ{m}," if params.get("opq") else ""
    return f"{rotation}IVF{params['nlist']},PQ{m}x{nbits}np"


def build_faiss_index(
    vectors: np.ndarray,
    kind: str = "auto",
    *,
    params: dict[str, int] | None = None,
    device: str = "cpu",
    flat_max_rows: int = FLAT_MAX_ROWS,
    seed: int = 0,
    train_device: str = "cpu",
):
    """Build a FAISS index over ``vectors`` (n, d) float32, L2-normalised; ids are row positions.

    ``kind``: one of ``KINDS``, or a kind string this function returned (``"ivf_sq8:nlist=64"``),
    which rebuilds the same index; ``params`` overrides :func:`default_params` (``nlist``, ``nprobe``,
    ``M``, ``ef_construction``, ``ef_search``). ``device="cuda"`` builds flat and IVF indexes on the
    GPU with faiss-gpu (:class:`IndexStoreError` when faiss has no GPU support); the returned index
    then lives on the GPU, and :func:`save_faiss_index` copies it back to the CPU.
    ``train_device`` runs only the IVF k-means on a GPU (:func:`gpu_kmeans`), the index staying
    on the CPU.
    Returns ``(index, kind_string)`` where the kind string records the kind and its parameters.
    """
    import faiss

    if kind.partition(":")[0] not in KINDS:
        raise IndexStoreError(
            f"Unknown FAISS index kind {kind!r}; expected one of {', '.join(KINDS)}."
        )
    kind, parsed = parse_kind(kind)
    params = {**parsed, **(params or {})}
    _check_device(device)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise IndexStoreError(
            f"Cannot build a FAISS index from an array of shape {vectors.shape}; "
            "expected (n, dim) with n >= 1."
        )
    n, d = vectors.shape
    valid = set(default_params(auto_kind(n, flat_max_rows) if kind == "auto" else kind, 10**6, d))
    if kind == "auto":  # parameters meant for the kind auto did not pick do not apply
        kind = auto_kind(n, flat_max_rows)
        params = {key: v for key, v in params.items() if key in valid}
    p = {**default_params(kind, n, d), **params}
    unknown = set(params) - valid
    if unknown:
        raise IndexStoreError(
            f"Unknown parameter(s) {sorted(unknown)} for index kind {kind!r}; "
            f"valid: {sorted(valid) or 'none'}."
        )

    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf_sq8":
        if p["nlist"] > n:
            raise IndexStoreError(
                f"nlist={p['nlist']} is more than the {n} vectors; use fewer cells."
            )
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, p["nlist"], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.nprobe = p["nprobe"]  # faiss's Python wrapper keeps `quantizer` alive
    elif kind == "ivf_pq":
        index = empty_ivfpq(d, n, p)
    else:  # hnsw_sq8
        index = faiss.IndexHNSWSQ(
            d, faiss.ScalarQuantizer.QT_8bit, p["M"], faiss.METRIC_INNER_PRODUCT
        )
        index.hnsw.efConstruction = p["ef_construction"]
        index.hnsw.efSearch = p["ef_search"]

    if device.startswith("cuda") and kind != "hnsw_sq8":
        index = to_device(index, device)
    elif device.startswith("cuda"):
        logger.warning("FAISS has no GPU HNSW; building the hnsw_sq8 index on the CPU.")

    if not index.is_trained:
        train = _training_sample(vectors, p.get("nlist", 0), seed)
        logger.info("Training %s on %d of %d vectors", kind, len(train), n)
        if not device.startswith("cuda"):
            gpu_kmeans(index, train_device)
        index.train(train)
    index.add(vectors)
    kind_string = format_kind(kind, p)
    logger.info("Built FAISS %s over %d x %d vectors", kind_string, n, d)
    return index, kind_string


def empty_ivfpq(d: int, n: int, p: dict[str, int]):
    """An untrained ``ivf_pq`` index with parameters ``p`` (checked against ``d`` and ``n``)."""
    import faiss

    if p["nlist"] > n:
        raise IndexStoreError(f"nlist={p['nlist']} is more than the {n} vectors; use fewer cells.")
    if p["m"] < 1 or d % p["m"]:
        raise IndexStoreError(
            f"PQ m={p['m']} must divide the dimension {d}; try m={pq_bytes(d, p['m'] or 1)}."
        )
    if not 1 <= p["nbits"] <= 16:
        raise IndexStoreError(f"PQ nbits={p['nbits']} must be between 1 and 16 (usually 8).")
    if n < 2 ** p["nbits"]:
        raise IndexStoreError(
            f"ivf_pq with nbits={p['nbits']} trains {2 ** p['nbits']} centroids per sub-vector, "
            f"more than the {n} vectors; use a smaller nbits, or the flat or ivf_sq8 kind."
        )
    if p.get("opq") and n < OPQ_MIN_ROWS:
        raise IndexStoreError(
            f"ivf_pq with opq=1 needs at least {OPQ_MIN_ROWS} vectors to train its rotation, "
            f"not {n}; use opq=0."
        )
    index = faiss.index_factory(d, ivfpq_factory(p), faiss.METRIC_INNER_PRODUCT)
    if p.get("opq"):
        faiss.downcast_VectorTransform(index.chain.at(0)).niter = OPQ_ITERATIONS
    faiss.extract_index_ivf(index).nprobe = min(p["nprobe"], p["nlist"])
    return index


def _training_sample(vectors: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """A seeded sample for k-means / quantiser training: ~64 points per cell, at least 10,000."""
    n = len(vectors)
    size = min(n, max(10_000, 64 * nlist))
    if size == n:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return vectors[rows]


def format_kind(kind: str, params: dict[str, int]) -> str:
    """``"ivf_sq8", {"nlist": 2048, "nprobe": 32}`` -> ``"ivf_sq8:nlist=2048,nprobe=32"``."""
    if not params:
        return kind
    return kind + ":" + ",".join(f"{k}={v}" for k, v in params.items())


def parse_kind(kind_string: str) -> tuple[str, dict[str, int]]:
    """Inverse of :func:`format_kind`."""
    kind, _, rest = kind_string.partition(":")
    params = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        try:
            params[key.strip()] = int(value)
        except ValueError:
            raise IndexStoreError(
                f"Bad FAISS kind string {kind_string!r}: {part!r} is not NAME=INTEGER."
            ) from None
    return kind, params


def describe_faiss(index) -> dict[str, Any]:
    """Kind, parameters, size and serialised bytes of a (CPU) FAISS index."""
    import faiss

    cpu = _to_cpu(index)
    kind, params = "other", {}
    inner = faiss.downcast_index(cpu.index) if isinstance(cpu, faiss.IndexPreTransform) else cpu
    if isinstance(inner, faiss.IndexIVFPQ):
        kind = "ivf_pq"
        params = {
            "nlist": int(inner.nlist),
            "nprobe": int(inner.nprobe),
            "m": int(inner.pq.M),
            "nbits": int(inner.pq.nbits),
            "opq": int(inner is not cpu),
        }
    elif isinstance(cpu, faiss.IndexFlat):
        kind = "flat"
    elif isinstance(cpu, faiss.IndexIVF):
        kind = "ivf_sq8" if isinstance(cpu, faiss.IndexIVFScalarQuantizer) else "ivf"
        params = {"nlist": int(cpu.nlist), "nprobe": int(cpu.nprobe)}
    elif isinstance(cpu, faiss.IndexHNSW):
        kind = "hnsw_sq8" if isinstance(cpu, faiss.IndexHNSWSQ) else "hnsw"
        params = {
            "M": int(cpu.hnsw.nb_neighbors(1)),
            "ef_construction": int(cpu.hnsw.efConstruction),
            "ef_search": int(cpu.hnsw.efSearch),
        }
    return {
        "kind": kind,
        "params": params,
        "kind_string": format_kind(kind, params),
        "ntotal": int(cpu.ntotal),
        "dim": int(cpu.d),
        "bytes": int(faiss.serialize_index(cpu).size),
    }


def set_search_params(index, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set how hard an approximate index searches; ignored (with a debug log) for flat."""
    import faiss

    for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
        if value is not None and value < 1:
            raise IndexStoreError(f"{name} must be a positive integer, got {value}.")
    target = index
    if nprobe is not None:
        ivf = _ivf_of(target)
        if ivf is None:
            logger.debug("nprobe=%d ignored: not an IVF index", nprobe)
        else:
            ivf.nprobe = min(nprobe, ivf.nlist)
    if ef_search is not None:
        if isinstance(target, faiss.IndexHNSW):
            target.hnsw.efSearch = ef_search
        else:
            logger.debug("ef_search=%d ignored: not an HNSW index", ef_search)


def _ivf_of(index):
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    except Exception:  # GPU indexes and other wrappers
        return index if hasattr(index, "nprobe") else None


# Below this many queries FAISS scans a flat index one query at a time; one matrix product
# over the same vectors (BLAS) answers a single query in about 60% of the time.
SMALL_BATCH = 20


def _flat_vectors(index) -> np.ndarray | None:
    """The (ntotal, d) float32 vectors a CPU inner-product flat index holds, as a view of its
    own memory (valid while ``index`` lives), or None for any other kind of index."""
    import faiss

    if type(index) is not faiss.IndexFlatIP or index.ntotal == 0:
        return None
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def _flat_search(vectors: np.ndarray, queries: np.ndarray, k: int):
    """Exact top-``k`` inner products by one matrix product, best first, padded like FAISS."""
    n = len(vectors)
    scores = queries @ vectors.T
    take = min(k, n)
    if take < n:
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    else:
        top = np.broadcast_to(np.arange(n), (len(queries), n))
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    ids = np.take_along_axis(top, order, axis=1).astype(np.int64)
    best = np.take_along_axis(top_scores, order, axis=1)
    if take < k:
        ids = np.pad(ids, ((0, 0), (0, k - take)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, k - take)), constant_values=-np.inf)
    return best.astype(np.float32, copy=False), ids


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products: (scores (q, k) float32, ids (q, k) int64), -inf / -1 where missing.

    Asking for more neighbours than the index holds is fine: the extra columns are -1 / -inf.
    """
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if queries.shape[1] != index.d:
        raise IndexStoreError(
            f"Query vectors have dimension {queries.shape[1]} but the index holds {index.d}-d "
            "vectors; encode the query with the encoder that built the index."
        )
    if k < 1:
        raise IndexStoreError(f"k must be at least 1, got {k}.")
    flat = _flat_vectors(index) if len(queries) < SMALL_BATCH else None
    if flat is not None:
        scores, ids = _flat_search(flat, queries, k)
    else:
        scores, ids = index.search(queries, k)
    ids = ids.astype(np.int64, copy=False)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return scores, ids


# The most bytes of scores one step of :func:`torch_search` holds (queries x base vectors x 4).
SEARCH_MEMORY = 256 << 20


def torch_search(
    vectors, queries: np.ndarray, k: int, *, device: str = "cpu", memory: int = SEARCH_MEMORY
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` (q, d) against ``vectors`` (n, d) as torch
    matrix products + top-k on ``device``, best first: (scores (q, k) float32, ids (q, k) int64),
    padded with -inf / -1 when ``k`` > n, as FAISS's flat search answers.

    ``vectors`` may be a torch tensor already on ``device`` (kept there between calls, as
    :class:`TorchFlatIndex` does). Memory is bounded: queries are taken in batches and the
    vectors in blocks so that one step's score matrix stays under ``memory`` bytes; each block's
    top-k is merged into the batch's running top-k."""
    import torch

    base = (
        vectors
        if isinstance(vectors, torch.Tensor)
        else torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
    )
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    n, q = base.shape[0], len(queries)
    take = min(k, n)
    scores = np.full((q, k), -np.inf, np.float32)
    ids = np.full((q, k), -1, np.int64)
    if take == 0 or q == 0:
        return scores, ids
    cells = max(1, memory // 4)
    block = max(1, min(n, cells // 256))  # vectors per step: room for at least 256 queries
    batch = max(1, min(q, cells // block))
    with torch.inference_mode():
        for start in range(0, q, batch):
            x = torch.from_numpy(queries[start : start + batch]).to(device)
            best_s = torch.full((len(x), take), -torch.inf, device=device)
            best_i = torch.full((len(x), take), -1, dtype=torch.int64, device=device)
            for b0 in range(0, n, block):
                part = x @ base[b0 : b0 + block].T
                s, i = torch.topk(part, min(take, part.shape[1]), dim=1)
                merged_s = torch.cat([best_s, s], dim=1)
                merged_i = torch.cat([best_i, i + b0], dim=1)
                best_s, at = torch.topk(merged_s, take, dim=1)
                best_i = torch.gather(merged_i, 1, at)
            scores[start : start + len(x), :take] = best_s.float().cpu().numpy()
            ids[start : start + len(x), :take] = best_i.cpu().numpy()
    return scores, ids


class TorchFlatIndex:
    """An exact inner-product index whose vectors are held by torch on ``device`` (a CUDA GPU
    where faiss has no GPU support); ``d``, ``ntotal`` and ``search`` answer as a FAISS flat
    index does, so :func:`search` takes it."""

    def __init__(self, vectors: np.ndarray, device: str, memory: int = SEARCH_MEMORY):
        import torch

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.device = device
        self.memory = memory
        self.ntotal, self.d = vectors.shape
        self.vectors = torch.from_numpy(vectors).to(device)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return torch_search(self.vectors, queries, k, device=self.device, memory=self.memory)


def search_backend(device: str) -> str:
    """What searches and trains on ``device``: ``"faiss"`` on the CPU; on a CUDA device
    ``"faiss-gpu"`` when faiss has GPU support and sees a GPU (the gpu extra), else ``"torch"``
    (exact search as torch matrix products on the GPU; IVF k-means stays on the CPU).
    IndexStoreError when torch sees no CUDA device either."""
    _gpu_number(device)
    if device == "cpu":
        return "faiss"
    if gpu_available():
        return "faiss-gpu"
    import torch

    if not torch.cuda.is_available():
        raise IndexStoreError(
            f"device {device!r} was asked for but neither faiss nor torch sees a CUDA GPU here;",
            "run on the CPU, or on a machine with an NVIDIA GPU and its driver.",
            param="device",
        )
    return "torch"


def device_index(index, device: str, vectors: np.ndarray | None = None):
    """``index`` made ready to search on ``device``: itself on the CPU; a faiss-gpu copy where
    faiss has GPU support; else, for an exact (flat) index, a :class:`TorchFlatIndex` over its
    vectors (``vectors``, or those the flat index holds). Approximate indexes without faiss-gpu
    stay with CPU FAISS (logged)."""
    backend = search_backend(device)
    if backend == "faiss":
        return index
    if backend == "faiss-gpu":
        return to_device(index, device)
    held = _flat_vectors(index) if vectors is None else vectors
    if held is None:
        logger.warning(
            "faiss has no GPU support here (pip install 'embedgenre[gpu]'): the approximate "
            "%s index is searched by FAISS on the CPU.",
            type(index).__name__,
        )
        return index
    return TorchFlatIndex(held, device)


def gpu_kmeans(index, device: str) -> bool:
    """Have an untrained IVF ``index`` run its coarse k-means on ``device`` with faiss-gpu (the
    cells are the same kind of result; the index itself stays on the CPU). True when it will;
    False, with a log line, on the CPU or where faiss has no GPU support (CPU k-means then)."""
    if device == "cpu":
        return False
    _gpu_number(device)
    ivf = _ivf_of(index)
    if ivf is None:
        return False
    if not gpu_available():
        logger.info("faiss has no GPU support here: IVF k-means runs on the CPU.")
        return False
    import faiss

    inner = faiss.IndexFlatIP(ivf.d) if ivf.metric_type == faiss.METRIC_INNER_PRODUCT else None
    inner = inner if inner is not None else faiss.IndexFlatL2(ivf.d)
    on_gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), _gpu_number(device), inner)
    ivf.clustering_index = on_gpu
    index.gpu_clustering = on_gpu  # faiss does not own it: the caller's index keeps it alive
    return True


def _gpu_number(device: str) -> int:
    """ "cuda" -> 0, "cuda:1" -> 1; IndexStoreError for anything but cpu / cuda / cuda:N."""
    name, _, number = device.partition(":")
    if name not in DEVICES or (number and not number.isdigit()) or (name == "cpu" and number):
        raise IndexStoreError(
            f"Unknown device {device!r}; expected cpu, cuda or cuda:N (N = GPU number)."
        )
    return int(number or 0)


def _check_device(device: str) -> None:
    _gpu_number(device)
    if device.startswith("cuda") and not gpu_available():
        raise FaissGpuError(
            "device 'cuda' was asked for but the installed faiss has no GPU support (or sees no "
            "GPU).",
            "Install the gpu extra (pip install 'embedgenre[gpu]', which brings faiss-gpu-cu12) "
            "on a machine with an NVIDIA GPU, or use the cpu device.",
            param="device",
        )


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees at least one GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_device(index, device: str):
    """Return ``index`` on ``device`` ("cpu", "cuda" or "cuda:N"); a copy when it moves."""
    _check_device(device)
    if device == "cpu":
        return _to_cpu(index)
    import faiss

    # faiss's Python wrapper keeps a reference to the resources in the returned index
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), _gpu_number(device), index)


def _to_cpu(index):
    import faiss

    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        return faiss.index_gpu_to_cpu(index)
    return index


def save_faiss_index(index, out) -> None:
    """Write ``index`` (copied to the CPU first when it lives on a GPU) to ``out``: a path, or a
    binary file object (written through its ``write``, so the file's own errors, a full disk
    among them, are raised as OSError rather than FAISS's RuntimeError)."""
    import faiss

    if hasattr(out, "write"):
        faiss.write_index(_to_cpu(index), faiss.PyCallbackIOWriter(out.write))
    else:
        faiss.write_index(_to_cpu(index), str(out))


def load_faiss_index(path: Path, *, device: str = "cpu"):
    """Read an index written by :func:`save_faiss_index`, optionally moving it to ``device``."""
    import faiss

    path = Path(path)
    if not path.is_file():
        raise IndexStoreError(
            f"FAISS index file {path} is missing; rebuild it with `embedgenre index` "
            "(the embeddings next to it are the source of truth)."
        )
    try:
        # an index with on-disk inverted lists finds its .ivfdata file beside it, wherever the
        # index directory has moved
        with faiss_prints_to_stderr():
            index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
    except RuntimeError as e:
        raise IndexStoreError(
            f"FAISS index file {path} cannot be read ({str(e).splitlines()[0]}); "
            "rebuild it with `embedgenre index`."
        ) from e
    _check_device(device)
    return to_device(index, device) if device != "cpu" else index


@contextmanager
def faiss_prints_to_stderr():
    """Send what FAISS's C++ code prints to stdout (on-disk inverted lists announce their file
    when opened or resized) to stderr instead, so stdout keeps only a command's output."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def synthetic_vectors(
    n: int, dim: int = 512, *, n_clusters: int = 10_000, seed: int = 0, chunk: int = 100_000
) -> np.ndarray:
    """Seeded, L2-normalised float32 (n, dim) vectors shaped like real embeddings, for tests and
    benchmarks (:func:`synthetic_chunks` gives the same rows a chunk at a time).

    Points scatter around ``n_clusters`` centres that themselves group around 100 super-centres;
    the scatter has a power-law spectrum (std of the j-th of ``dim`` random directions ~ j^-1/2).
    Real embeddings have this kind of low intrinsic dimension; i.i.d. Gaussian vectors in 512-d have
    none (every point is nearly equidistant from every other) and are no test of an ANN index.
    """
    out = np.empty((n, dim), dtype=np.float32)
    start = 0
    for block in synthetic_chunks(n, dim, n_clusters=n_clusters, seed=seed, chunk=chunk):
        out[start : start + len(block)] = block
        start += len(block)
    return out


def synthetic_chunks(
    n: int, dim: int = 512, *, n_clusters: int = 10_000, seed: int = 0, chunk: int = 100_000
):
    """The rows of :func:`synthetic_vectors` as float32 arrays of at most ``chunk`` rows, so
    more vectors than fit in memory can be generated."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    sup = unit(rng.standard_normal((100, dim), dtype=np.float32))
    centres = unit(rng.standard_normal((n_clusters, dim), dtype=np.float32))
    centres = unit(sup[rng.integers(0, len(sup), n_clusters)] + 0.8 * centres)
    spectrum = np.arange(1, dim + 1, dtype=np.float32) ** -0.5
    spectrum *= 0.9 / np.sqrt((spectrum**2).sum())
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        which = rng.integers(0, n_clusters, m)
        scatter = (rng.standard_normal((m, dim), dtype=np.float32) * spectrum) @ rotation
        yield unit(centres[which] + scatter).astype(np.float32, copy=False)


def is_exact(index) -> bool:
    """Whether ``index`` (on the CPU or a GPU) answers exactly: a flat index, which returns the
    true nearest neighbours where an approximate one may miss some."""
    import faiss

    if "Gpu" in type(index).__name__:
        return "Flat" in type(index).__name__
    return isinstance(index, faiss.IndexFlat)
