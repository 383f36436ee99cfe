"""Searching a FAISS index: top-k inner products, how hard an approximate index searches, and
what searches on a CUDA device.

FAISS's contract for missing neighbours is kept everywhere: row id ``-1`` with score ``-inf``.
Search-time parameters (``nprobe``, ``ef_search``) are stored in the index file and can be
changed with :func:`set_search_params`. On a GPU an index is searched by faiss-gpu where faiss
has GPU support, else an exact index is searched as torch matrix products on the GPU
(:class:`TorchFlatIndex`); :func:`device_index` makes that choice.
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.ann import gpu
from embedgenre.errors import IndexStoreError

logger = logging.getLogger(__name__)

# Below this many queries FAISS scans a flat index one query at a time; one matrix product
# over the same vectors (BLAS) answers a single query in about 60% of the time.
SMALL_BATCH = 20
# The most bytes of scores one step of :func:`torch_search` holds (queries x base vectors x 4).
SEARCH_MEMORY = 256 << 20


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


def set_search_params(index, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set how hard an approximate index searches; ignored (with a debug log) for flat."""
    import faiss

    for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
        if value is not None and value < 1:
            raise IndexStoreError(f"{name} must be a positive integer, got {value}.")
    target = index
    if nprobe is not None:
        ivf = gpu.ivf_of(target)
        if ivf is None:
            logger.debug("nprobe=%d ignored: not an IVF index", nprobe)
        else:
            ivf.nprobe = min(nprobe, ivf.nlist)
    if ef_search is not None:
        if isinstance(target, faiss.IndexHNSW):
            target.hnsw.efSearch = ef_search
        else:
            logger.debug("ef_search=%d ignored: not an HNSW index", ef_search)


def is_exact(index) -> bool:
    """Whether ``index`` (on the CPU or a GPU) answers exactly: a flat index, which returns the
    true nearest neighbours where an approximate one may miss some."""
    import faiss

    if "Gpu" in type(index).__name__:
        return "Flat" in type(index).__name__
    return isinstance(index, faiss.IndexFlat)


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
    gpu.gpu_number(device)
    if device == "cpu":
        return "faiss"
    if gpu.gpu_available():
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
        return gpu.to_device(index, device)
    held = _flat_vectors(index) if vectors is None else vectors
    if held is None:
        logger.warning(
            "faiss has no GPU support here (pip install 'embedgenre[gpu]'): the approximate "
            "%s index is searched by FAISS on the CPU.",
            type(index).__name__,
        )
        return index
    return TorchFlatIndex(held, device)
