"""Reading rows of a stored vectors.npy without keeping the file resident: a set can be larger
than memory, and a pass over it (copying it, sampling it, adding it to an index) must hold only
a block of rows at a time. Arrays in memory are simply indexed."""

from __future__ import annotations

import mmap
import os

import numpy as np


def read_rows(vectors: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``vectors`` as a new float32 array. From a memory-mapped .npy file
    (``np.load(..., mmap_mode="r")``) they are read with a plain file read, so a pass over all
    rows leaves none of the file mapped in this process: its resident memory stays that of one
    block, however large the set."""
    stop = min(stop, len(vectors))
    if (
        isinstance(vectors, np.memmap)
        and isinstance(vectors.base, mmap.mmap)  # the whole mapped array, not a view of it
        and vectors.filename
        and vectors.ndim == 2
        and vectors.flags.c_contiguous
    ):
        width = vectors.shape[1]
        out = np.fromfile(
            vectors.filename,
            dtype=vectors.dtype,
            count=max(0, stop - start) * width,
            offset=vectors.offset + start * width * vectors.dtype.itemsize,
        ).reshape(-1, width)
        return out.astype(np.float32, copy=False)
    return np.ascontiguousarray(vectors[start:stop], dtype=np.float32)


def read_row_set(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted) of ``vectors`` as a new float32 array. From a memory-mapped .npy
    file each row is read with its own plain read: indexing the map instead faults in the
    kernel's read-ahead around every row, and a sample spread over a large file then leaves most
    of the file resident in this process (20 GB of 20 for a 2% sample of 10M 512-d rows)."""
    if not (
        isinstance(vectors, np.memmap)
        and isinstance(vectors.base, mmap.mmap)
        and vectors.filename
        and vectors.ndim == 2
        and vectors.flags.c_contiguous
    ):
        return np.ascontiguousarray(vectors[rows], dtype=np.float32)
    width = vectors.shape[1]
    size = width * vectors.dtype.itemsize
    out = np.empty((len(rows), width), dtype=vectors.dtype)
    if not len(rows):
        return out.astype(np.float32, copy=False)
    view = memoryview(out).cast("B")
    with open(vectors.filename, "rb", buffering=0) as f:
        fd = f.fileno()
        for i, r in enumerate(rows.tolist()):
            got = os.preadv(fd, [view[i * size : (i + 1) * size]], vectors.offset + r * size)
            if got != size:
                raise OSError(f"{vectors.filename}: short read at row {r}")
    return out.astype(np.float32, copy=False)
