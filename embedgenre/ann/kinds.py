"""FAISS index kinds as strings, their parameters, and the kind a set gets from its size and a
memory budget. Nothing here imports faiss: options are checked before any index is built.

A kind string names a kind and its parameters, e.g. ``"ivf_sq8:nlist=2048,nprobe=32"``
(:func:`format_kind` / :func:`parse_kind`). :func:`choose_kind` picks a set's kind the way
autofaiss does: the most accurate kind whose resident size fits the budget (``--index-memory``).

============  =========================================  ===============================
kind          bytes per vector (+ ids, 8 bytes)          picked by ``auto``
============  =========================================  ===============================
flat          4 * dim (rebuilt from vectors.npy on open)  under 50,000 vectors
ivf_sq8       dim                                         under 2M vectors, if it fits
ivf_pq        m (PQ code bytes, largest m <= dim / 8      above, or when ivf_sq8 does not
              that fits the budget), OPQ when             fit the budget
              dim / m >= 16
============  =========================================  ===============================
"""

from __future__ import annotations

import math
import re

from embedgenre.errors import IndexPlanError, IndexStoreError

FLAT_MAX_ROWS = 50_000
OPQ_MIN_ROWS = 10_000  # an OPQ rotation trains 256-centroid quantisers: it needs many vectors
KINDS = ("auto", "flat", "ivf_sq8", "hnsw_sq8", "ivf_pq")
DEFAULT_MEMORY = 4 * 10**9  # bytes, "4GB"
PQ_MIN_ROWS = 2_000_000  # ivf_pq from here on, or sooner when ivf_sq8 would not fit
ID_BYTES = 8  # an inverted list stores an int64 id beside each code
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


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


def check_kind(kind: str) -> tuple[str, dict[str, int]]:
    """``kind`` parsed into (kind, parameters); IndexStoreError naming the valid kinds."""
    base, given = parse_kind(kind)
    if base not in KINDS:
        raise IndexStoreError(
            f"unknown FAISS index kind {kind!r}; expected one of {', '.join(KINDS)} "
            "(parameters as KIND:NAME=VALUE,..., e.g. ivf_pq:nlist=4096,m=64)."
        )
    return base, given


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
        if n < FLAT_MAX_ROWS:
            return "flat"
        sq8 = default_params("ivf_sq8", n, dim)
        if n < PQ_MIN_ROWS and index_bytes("ivf_sq8", n, dim, sq8) <= allowed:
            return format_kind("ivf_sq8", sq8)
        base = "ivf_pq"
    params = {**default_params(base, n, dim), **given}
    if "nlist" in given and "nprobe" not in given and "nprobe" in params:
        params["nprobe"] = default_params(base, given["nlist"] * 64, dim)["nprobe"]
        params["nprobe"] = min(params["nprobe"], given["nlist"])
    if base == "ivf_pq" and "m" not in given:
        params["m"] = _fitting_code(n, dim, params, allowed)
        if "opq" not in given:
            params["opq"] = opq_pays(dim, params["m"], n)
    if base != "flat" and index_bytes(base, n, dim, params) > allowed:
        need = index_bytes(base, n, dim, params) / budget_share
        raise IndexPlanError(
            f"a {base} index of {n:,} x {dim} vectors ({format_kind(base, params)}) needs "
            f"about {need / 1e9:.1f} GB but the index memory is {memory / 1e9:.1f} GB;",
            "give it more memory, or choose the ivf_pq kind (smaller codes).",
            param="index_memory",
        )
    return format_kind(base, params)


def _fitting_code(n: int, dim: int, params: dict[str, int], allowed: float) -> int:
    """The largest PQ code (bytes a vector) of at most dim / 8 whose index fits ``allowed``."""
    m = pq_bytes(dim, max(1, dim // 8))
    while m > 1:
        if index_bytes("ivf_pq", n, dim, {**params, "m": m, "opq": 1}) <= allowed:
            return m
        m = pq_bytes(dim, m - 1)
    return 1
