"""FAISS indexes over L2-normalised float32 vectors (inner product = cosine). The only part of
embedgenre that imports faiss; everything else calls it through the names below.

- :mod:`~embedgenre.ann.kinds`: kinds as strings (``"ivf_sq8:nlist=2048,nprobe=32"``), their
  default parameters, the kind a set gets from its size and a memory budget (no faiss);
- :mod:`~embedgenre.ann.build`: building flat, IVF-SQ8, HNSW-SQ8 and IVF-PQ indexes;
- :mod:`~embedgenre.ann.io`: a set's index on disk: written beside its vectors (IVF-PQ with its
  inverted lists merged on disk), checked against its recorded digest and read back, described;
- :mod:`~embedgenre.ann.query`: top-k search, search-time parameters (``nprobe``,
  ``ef_search``), and what searches on a CUDA device (faiss-gpu, else exact torch search);
- :mod:`~embedgenre.ann.gpu`: moving indexes to and from a GPU, GPU k-means;
- :mod:`~embedgenre.ann.quality`: exact ground truth and recall@k of an approximate index.

FAISS's contract for missing neighbours is kept everywhere: row id ``-1`` with score ``-inf``.
"""

from embedgenre.ann.build import (
    OPQ_ITERATIONS,
    build_faiss_index,
    empty_ivfpq,
    flat_index,
    train_ivfpq,
)
from embedgenre.ann.gpu import DEVICES, gpu_available, gpu_kmeans, to_device
from embedgenre.ann.io import (
    FAISS_PARAMS,
    INDEX_FILE,
    IVFDATA,
    build_ivfpq_on_disk,
    describe_faiss,
    faiss_prints_to_stderr,
    load_faiss_index,
    open_set_index,
    save_faiss_index,
    saved_kind_problem,
    shard_rows,
    write_set_index,
)
from embedgenre.ann.kinds import (
    DEFAULT_MEMORY,
    FLAT_MAX_ROWS,
    KINDS,
    OPQ_MIN_ROWS,
    PQ_MIN_ROWS,
    auto_kind,
    check_kind,
    choose_kind,
    default_params,
    format_kind,
    index_bytes,
    ivfpq_factory,
    opq_pays,
    parse_kind,
    parse_memory,
    pq_bytes,
)
from embedgenre.ann.quality import exact_top_k, recall_at_k
from embedgenre.ann.query import (
    SEARCH_MEMORY,
    SMALL_BATCH,
    TorchFlatIndex,
    device_index,
    is_exact,
    search,
    search_backend,
    set_search_params,
    torch_search,
)

__all__ = [
    "DEFAULT_MEMORY",
    "DEVICES",
    "FAISS_PARAMS",
    "FLAT_MAX_ROWS",
    "INDEX_FILE",
    "IVFDATA",
    "KINDS",
    "OPQ_ITERATIONS",
    "OPQ_MIN_ROWS",
    "PQ_MIN_ROWS",
    "SEARCH_MEMORY",
    "SMALL_BATCH",
    "TorchFlatIndex",
    "auto_kind",
    "build_faiss_index",
    "build_ivfpq_on_disk",
    "check_kind",
    "choose_kind",
    "default_params",
    "describe_faiss",
    "device_index",
    "empty_ivfpq",
    "exact_top_k",
    "faiss_prints_to_stderr",
    "flat_index",
    "format_kind",
    "gpu_available",
    "gpu_kmeans",
    "index_bytes",
    "is_exact",
    "ivfpq_factory",
    "load_faiss_index",
    "open_set_index",
    "opq_pays",
    "parse_kind",
    "parse_memory",
    "pq_bytes",
    "recall_at_k",
    "save_faiss_index",
    "saved_kind_problem",
    "search",
    "search_backend",
    "set_search_params",
    "shard_rows",
    "to_device",
    "torch_search",
    "train_ivfpq",
    "write_set_index",
]
