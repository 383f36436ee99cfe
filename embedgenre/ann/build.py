"""Building FAISS indexes over L2-normalised float32 vectors (inner product = cosine).

Which index, by size (``kind="auto"``, :mod:`embedgenre.ann.kinds`):

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
  memory (:func:`build_faiss_index`), or trained here (:func:`train_ivfpq`) and filled in shards
  merged on disk (:func:`embedgenre.ann.io.build_ivfpq_on_disk`) for a large set.

The kind string returned by :func:`build_faiss_index` names the kind and its parameters, e.g.
``"ivf_sq8:nlist=2048,nprobe=32"``; :func:`embedgenre.ann.io.describe_faiss` reads the same from
a loaded index.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from embedgenre.ann.gpu import check_device, gpu_kmeans, to_device
from embedgenre.ann.kinds import (
    FLAT_MAX_ROWS,
    KINDS,
    OPQ_MIN_ROWS,
    auto_kind,
    default_params,
    format_kind,
    ivfpq_factory,
    parse_kind,
    pq_bytes,
)
from embedgenre.errors import IndexStoreError
from embedgenre.store.vectors import read_row_set

logger = logging.getLogger(__name__)

OPQ_ITERATIONS = 20  # faiss's default 50 takes minutes on 2 cores for little more recall


def flat_index(vectors: np.ndarray):
    """An exact (flat) inner-product FAISS index over ``vectors`` (n, d) float32; n may be 0.
    Ids are row positions."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


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
    then lives on the GPU, and :func:`~embedgenre.ann.io.save_faiss_index` copies it back to the
    CPU. ``train_device`` runs only the IVF k-means on a GPU (:func:`gpu_kmeans`), the index
    staying on the CPU.
    Returns ``(index, kind_string)`` where the kind string records the kind and its parameters.
    """
    import faiss

    if kind.partition(":")[0] not in KINDS:
        raise IndexStoreError(
            f"Unknown FAISS index kind {kind!r}; expected one of {', '.join(KINDS)}."
        )
    kind, parsed = parse_kind(kind)
    params = {**parsed, **(params or {})}
    check_device(device)
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


def train_ivfpq(vectors: np.ndarray, params: dict[str, int], *, seed: int = 0, device: str = "cpu"):
    """An empty ``ivf_pq`` index trained on a seeded sample of ``vectors`` (rows read in order,
    so a memory map is read once): ~40 points per cell, at least 20,000 (PQ needs 256 x 39).
    ``device``: where the coarse k-means runs (:func:`gpu_kmeans`)."""
    n, dim = vectors.shape
    index = empty_ivfpq(dim, n, params)
    gpu_kmeans(index, device)
    size = min(n, max(20_000, 40 * params["nlist"]))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    sample = read_row_set(vectors, rows)
    t0 = time.perf_counter()
    index.train(sample)
    logger.info(
        "trained %s on %d vectors in %.1f s",
        ivfpq_factory(params),
        size,
        time.perf_counter() - t0,
    )
    return index
