"""A set's FAISS index on disk: writing it beside the set's vectors, checking and reading it
back, and describing a loaded index.

A set's trained index is ``faiss.index`` in the set's folder; an ``ivf_pq`` index keeps its
inverted lists beside it in ``faiss.ivfdata``. :func:`write_set_index` builds the kind chosen for
the set (:func:`~embedgenre.ann.kinds.choose_kind`) and returns what the manifest records about
it; :func:`open_set_index` reads it back only when it is the file that was recorded, else
rebuilds it from the vectors, which stay the source of truth. A ``flat`` index is never written:
it is rebuilt from the vectors, which is as fast as reading it.

An ``ivf_pq`` index is trained once on a seeded sample, its inverted lists are filled shard by
shard (each shard a copy of the trained, empty index, sized to the budget) and the shards are
merged into one on-disk inverted-list file (memory-mapped when searched), so neither the vectors
nor the codes are ever all in memory while building.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.ann.build import build_faiss_index, flat_index, train_ivfpq
from embedgenre.ann.gpu import check_device, to_cpu, to_device
from embedgenre.ann.kinds import DEFAULT_MEMORY, choose_kind, format_kind, parse_kind, parse_memory
from embedgenre.errors import IndexStoreError
from embedgenre.store import atomic
from embedgenre.store.vectors import read_rows

logger = logging.getLogger(__name__)

INDEX_FILE = "faiss.index"
IVFDATA = "faiss.ivfdata"  # the inverted lists of an on-disk FAISS index, beside faiss.index
# FAISS kinds a set may name, with the values each parameter may take
FAISS_PARAMS = {
    "flat": {},
    "ivf_sq8": {"nlist": (1, 1 << 20), "nprobe": (1, 1 << 20)},
    "hnsw_sq8": {"M": (2, 1 << 10), "ef_construction": (1, 1 << 16), "ef_search": (1, 1 << 16)},
    "ivf_pq": {
        "nlist": (1, 1 << 20),
        "nprobe": (1, 1 << 20),
        "m": (1, 1 << 12),
        "nbits": (1, 16),
        "opq": (0, 1),
    },
}


def saved_kind_problem(kind_string: str) -> str | None:
    """What is wrong with a kind string read from a manifest, as "an unknown FAISS kind ..." or
    "FAISS kind ... with NAME=VALUE, which FAISS does not take"; None when FAISS takes it. Some
    values (``nlist=0``, ``M=1``) crash the process inside FAISS instead of raising."""
    try:
        kind, params = parse_kind(kind_string)
    except IndexStoreError:
        kind, params = None, {}
    if kind == "auto":
        ranges = {**FAISS_PARAMS["ivf_sq8"], **FAISS_PARAMS["hnsw_sq8"]}
    elif kind in FAISS_PARAMS:
        ranges = FAISS_PARAMS[kind]
    else:
        return f"an unknown FAISS kind {kind_string!r}"
    bad = [
        f"{name}={value}"
        for name, value in params.items()
        if name not in ranges or not ranges[name][0] <= value <= ranges[name][1]
    ]
    if bad:
        return f"FAISS kind {kind_string!r} with {', '.join(bad)}, which FAISS does not take"
    return None


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
    (:func:`~embedgenre.ann.gpu.gpu_kmeans`: a CUDA GPU with faiss-gpu, else the CPU)."""
    memory = parse_memory(memory)
    n, dim = vectors.shape
    chosen = choose_kind(n, dim, memory, kind)
    base, params = parse_kind(chosen)
    meta: dict = {"kind": chosen}
    if base == "flat":
        return meta
    path = Path(directory) / INDEX_FILE
    if base == "ivf_pq":
        build_ivfpq_on_disk(vectors, path, params, memory, seed=seed, device=device)
        meta["ivfdata_bytes"] = (path.parent / IVFDATA).stat().st_size
    else:
        index, chosen = build_faiss_index(
            np.asarray(vectors), kind=chosen, seed=seed, train_device=device
        )
        with atomic.open_for_write(path, "wb") as f:
            save_faiss_index(index, f)
    with open(path, "rb") as f:  # checked before FAISS parses the file
        meta["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    meta["memory"] = memory
    return meta


def open_set_index(directory: Path, recorded: dict, vectors: np.ndarray, *, whole: bool = True):
    """The FAISS index over a set's ``vectors`` (n, d), float32 or float16, memory-mapped or not.

    ``recorded``: what :func:`write_set_index` returned, as the manifest keeps it. A trained index
    is read from ``directory`` only when the file's SHA-256 and the inverted lists' size are the
    recorded ones (FAISS parses only files the index's writer made: a damaged trained index can
    hang or exhaust memory while loading) and it holds n x d vectors; else, and for ``flat``, it
    is rebuilt from the vectors. ``whole``: False when ``vectors`` are not all the rows the file
    was built from (items dropped since), which also rebuilds it."""
    kind = recorded.get("kind", "flat")
    n, dim = vectors.shape
    if not n:  # every poster of the set failed, say: nothing to find
        return flat_index(np.empty((0, dim), np.float32))
    path = Path(directory) / INDEX_FILE
    if (
        kind != "flat"
        and whole
        and _digest_matches(path, recorded.get("sha256"))
        and _ivfdata_matches(Path(directory), recorded.get("ivfdata_bytes"))
    ):
        try:
            index = load_faiss_index(path)
            if index.ntotal == n and index.d == dim:
                return index
            logger.warning("FAISS index %s is stale; rebuilding it from vectors.npy", path)
        except Exception as e:  # a derived file: rebuild rather than fail
            logger.warning("could not read %s (%s); rebuilding it from vectors.npy", path, e)
    index, _ = build_faiss_index(np.asarray(vectors, dtype=np.float32), kind=kind)
    return index


def _ivfdata_matches(directory: Path, size: int | None) -> bool:
    """True when the set keeps no on-disk inverted lists, or keeps them at their recorded size
    (the file is memory-mapped, not hashed: it can be gigabytes)."""
    if size is None:
        return True
    try:
        info = (directory / IVFDATA).lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _digest_matches(path: Path, sha256: str | None) -> bool:
    """True when ``path`` is a regular file with this SHA-256."""
    if not isinstance(sha256, str):
        return False
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha256
    except OSError:
        return False


def shard_rows(dim: int, memory: int) -> int:
    """Vectors added per shard: a shard's float32 vectors take at most a quarter of the budget."""
    return int(min(2_000_000, max(10_000, memory // 4 // (dim * 4))))


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
                    save_faiss_index(shard, f)
            except OSError as e:
                raise atomic.write_error(Path(names[-1]), e) from e
            del shard, x
            logger.info("ivf_pq: added rows %d-%d of %d", start, stop, n)
        merged = faiss.clone_index(trained)
        ivfdata = path.parent / IVFDATA
        ivfdata.unlink(missing_ok=True)
        # FAISS fills the inverted lists through a memory map: a full disk would be a bus error
        atomic.check_space(ivfdata, n * (merged.code_size + np.dtype(np.int64).itemsize))
        with faiss_prints_to_stderr():
            merge_ondisk(merged, names, str(ivfdata))
        with atomic.open_for_write(path, "wb") as f:
            save_faiss_index(merged, f)
        del merged
    finally:
        shutil.rmtree(shards_dir, ignore_errors=True)


def save_faiss_index(index, out) -> None:
    """Write ``index`` (copied to the CPU first when it lives on a GPU) to ``out``: a path, or a
    binary file object (written through its ``write``, so the file's own errors, a full disk
    among them, are raised as OSError rather than FAISS's RuntimeError)."""
    import faiss

    if hasattr(out, "write"):
        faiss.write_index(to_cpu(index), faiss.PyCallbackIOWriter(out.write))
    else:
        faiss.write_index(to_cpu(index), str(out))


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
    check_device(device)
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


def describe_faiss(index) -> dict[str, Any]:
    """Kind, parameters, size and serialised bytes of a (CPU) FAISS index."""
    import faiss

    cpu = to_cpu(index)
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
