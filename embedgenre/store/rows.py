"""The rows of one embedding set while an index run builds it, and writing them as the set's files.

A run gathers a set's rows from up to three kinds of source: rows kept from the committed set
(:class:`StoredRows`), chunks a killed run left in ``.partial/`` and chunks encoded now (both
:class:`ChunkRows`: every encoded chunk is saved before it counts). A source holds only ids and
content hashes in memory; its vectors and thumbnails stay in their files until
:func:`write_set_files` copies them, one source and one block at a time, into the new set's
files in item order. So writing a set takes memory for its ids and a block of rows, not for
its vectors (2 KB each at 512-d float32) or thumbnails (~8 KB each).

Chunk file (``chunk-<sha1 of its ids and hashes>.npz``): ``ids``, ``hashes``, ``vectors``
float32 (n, dim), and for posters ``thumb_data`` (uint8, the JPEGs concatenated) and
``thumb_len`` (int64 (n,), 0 where a row has none).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from embedgenre.store import atomic
from embedgenre.store.reader import THUMBS_BIN, THUMBS_INDEX
from embedgenre.store.vectors import read_row_set

logger = logging.getLogger(__name__)

BLOCK = 65_536  # rows copied at a time (128 MB of 512-d float32 vectors)


@dataclass
class RowSource:
    """Some rows of a set: ``ids`` and ``hashes`` in memory, the rest read when written."""

    ids: np.ndarray  # str (n,)
    hashes: np.ndarray  # str (n,)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, mask: np.ndarray) -> RowSource:
        """The rows where ``mask`` (bool (n,)) is true, as a source of the same file."""
        raise NotImplementedError

    def vector_blocks(self, size: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float vectors of rows first..first + len) for every block of rows."""
        raise NotImplementedError

    def thumb_lengths(self) -> np.ndarray | None:
        """int64 (n,) byte length of each row's thumbnail (0: none); None: the source keeps
        no thumbnails (a set written before they were kept)."""
        raise NotImplementedError

    def thumb_blocks(self, size: int = BLOCK) -> Iterator[bytes]:
        """The thumbnails' bytes, in row order, a block of rows at a time."""
        raise NotImplementedError


@dataclass
class StoredRows(RowSource):
    """Rows ``keep`` (positions, increasing) of the committed set in ``directory``."""

    directory: Path
    keep: np.ndarray
    thumbnails: bool

    def take(self, mask):
        return replace(self, ids=self.ids[mask], hashes=self.hashes[mask], keep=self.keep[mask])

    def vector_blocks(self, size: int = BLOCK):
        vectors = np.load(self.directory / "vectors.npy", mmap_mode="r", allow_pickle=False)
        for start in range(0, len(self.keep), size):
            yield start, read_row_set(vectors, self.keep[start : start + size])

    def _thumbs(self):
        data = np.load(self.directory / THUMBS_BIN, mmap_mode="r", allow_pickle=False)
        offsets = np.load(self.directory / THUMBS_INDEX, allow_pickle=False)[self.keep]
        return data, offsets

    def thumb_lengths(self):
        return self._thumbs()[1][:, 1].astype(np.int64) if self.thumbnails else None

    def thumb_blocks(self, size: int = BLOCK):
        data, offsets = self._thumbs()
        for start in range(0, len(offsets), size):
            yield b"".join(bytes(data[a : a + n]) for a, n in offsets[start : start + size])


@dataclass
class ChunkRows(RowSource):
    """Rows ``keep`` (positions, increasing; None: all) of the chunk file at ``path``."""

    path: Path
    keep: np.ndarray | None = None
    thumbnails: bool = False

    def take(self, mask):
        keep = np.arange(len(mask)) if self.keep is None else self.keep
        return replace(self, ids=self.ids[mask], hashes=self.hashes[mask], keep=keep[mask])

    def _load(self, key: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as z:
            return z[key]

    def _kept(self, a: np.ndarray) -> np.ndarray:
        return a if self.keep is None else a[self.keep]

    def vector_blocks(self, size: int = BLOCK):
        vectors = self._kept(self._load("vectors"))
        for start in range(0, len(vectors), size):
            yield start, vectors[start : start + size]

    def thumb_lengths(self):
        return self._kept(self._load("thumb_len")).astype(np.int64) if self.thumbnails else None

    def thumb_blocks(self, size: int = BLOCK):
        data, lengths = self._load("thumb_data"), self._load("thumb_len")
        starts = np.cumsum(lengths) - lengths
        pairs = self._kept(np.stack([starts, lengths], axis=1))
        for start in range(0, len(pairs), size):
            yield b"".join(bytes(data[a : a + n]) for a, n in pairs[start : start + size])


def pack_thumbs(thumbs: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 concatenated bytes, int64 lengths) of a list of thumbnails (None: length 0)."""
    lengths = np.array([len(t) if t else 0 for t in thumbs], dtype=np.int64)
    data = np.frombuffer(b"".join(t for t in thumbs if t), dtype=np.uint8)
    return data, lengths


def unpack_thumbs(data: np.ndarray, lengths: np.ndarray) -> list[bytes | None]:
    if data.dtype != np.uint8 or lengths.ndim != 1 or lengths.sum() != len(data):
        raise ValueError("thumbnail arrays do not agree")
    ends = np.cumsum(lengths)
    return [bytes(data[e - n : e]) if n else None for e, n in zip(ends, lengths)]


def save_chunk(
    directory: Path,
    ids: np.ndarray,
    hashes: np.ndarray,
    vectors: np.ndarray,
    thumbs: list[bytes | None] | None,
) -> ChunkRows:
    """Write one encoded chunk into ``directory`` (atomically) and return it as a source."""
    directory.mkdir(parents=True, exist_ok=True)
    # named by its content, so encoding workers can write chunks side by side without asking
    name = hashlib.sha1("\n".join(f"{i}\t{h}" for i, h in zip(ids, hashes)).encode())
    arrays = {"ids": ids, "hashes": hashes, "vectors": vectors}
    if thumbs is not None:
        arrays["thumb_data"], arrays["thumb_len"] = pack_thumbs(thumbs)
    path = directory / f"chunk-{name.hexdigest()[:16]}.npz"
    atomic.save_npz(path, **arrays)
    return ChunkRows(np.asarray(ids, str), np.asarray(hashes, str), path, None, thumbs is not None)


def write_set_files(
    directory: Path,
    sources: list[RowSource],
    position: dict[str, int],
    dim: int,
    dtype: str,
    thumbnails: bool,
    make_thumb: Callable[[str], bytes | None] | None = None,
) -> int:
    """Write ``vectors.npy`` (as ``dtype``), ``ids.npy``, ``hashes.npy`` and, with
    ``thumbnails``, ``thumbs.bin`` / ``thumbs.npy`` of the rows of ``sources`` into
    ``directory``, rows in the order of ``position`` (item id -> position in the catalog).
    Thumbnails of sources that keep none are made by ``make_thumb(item id)``. The thumbnail
    bytes are written in source order; the row-aligned index says where each row's are.
    Returns the number of rows."""
    ids = np.concatenate([s.ids for s in sources]) if sources else np.array([], str)
    hashes = np.concatenate([s.hashes for s in sources]) if sources else np.array([], str)
    order = np.argsort(np.array([position[str(i)] for i in ids], np.int64), kind="stable")
    dest = np.empty(len(ids), np.int64)  # dest[k]: the output row of source row k
    dest[order] = np.arange(len(ids))
    atomic.save_npy(directory / "ids.npy", ids[order].astype(str))
    atomic.save_npy(directory / "hashes.npy", hashes[order].astype(str))
    with atomic.npy_memmap(directory / "vectors.npy", (len(ids), dim), dtype) as out:
        first = 0
        for src in sources:
            for start, block in src.vector_blocks():
                rows = dest[first + start : first + start + len(block)]
                out[rows] = np.asarray(block, np.float32).astype(dtype, copy=False)
            first += len(src)
    if thumbnails:
        _write_thumbs(directory, sources, ids, dest, make_thumb)
    return int(len(ids))


def _write_thumbs(directory, sources, ids, dest, make_thumb) -> None:
    made: dict[int, list[bytes | None]] = {}  # sources without thumbnails: made now, in memory
    lengths = []
    first = 0
    for n, src in enumerate(sources):
        got = src.thumb_lengths()
        if got is None:
            made[n] = [
                make_thumb(str(i)) if make_thumb else None for i in ids[first : first + len(src)]
            ]
            got = np.array([len(t) if t else 0 for t in made[n]], np.int64)
        lengths.append(got)
        first += len(src)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros((len(ids), 2), np.int64)
    offsets[dest, 0] = np.cumsum(lengths) - lengths
    offsets[dest, 1] = lengths
    with atomic.npy_memmap(directory / THUMBS_BIN, (int(lengths.sum()),), np.uint8) as data:
        at = 0
        for n, src in enumerate(sources):
            blocks = [b"".join(t for t in made[n] if t)] if n in made else src.thumb_blocks()
            for block in blocks:
                data[at : at + len(block)] = np.frombuffer(block, np.uint8)
                at += len(block)
    atomic.save_npy(directory / THUMBS_INDEX, offsets)
