"""GenreIndex: read access to one committed generation of an index directory.

Opening an index reads and validates its manifest (:mod:`embedgenre.store.schema`), the item
table and every embedding set's arrays: rows, dims, dtypes and NaN are checked once, so a
damaged or tampered index is refused with one clear message instead of answering from
misaligned rows. What a reader needs is opened at once (the item table in memory, vectors
memory-mapped), so a reader keeps answering from its generation while a writer commits the next
ones and removes the old files: an open memory map outlives the file's name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from tokenize import TokenError

import numpy as np

# ann's modules import store.atomic and store.vectors: its names are read at call time
from embedgenre import ann
from embedgenre.errors import IndexStoreError
from embedgenre.names import SET_MODALITIES
from embedgenre.store.paths import check_name, inside
from embedgenre.store.schema import (
    MANIFEST,
    HeadRecord,
    Manifest,
    SetEntry,
    parse_manifest,
)

logger = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
REQUIRED_COLUMNS = ("id", "genres")
# Thumbnails: concatenated JPEG bytes and (rows, 2) int64 (offset, length), row-aligned.
THUMBS_BIN = "thumbs.bin"
THUMBS_INDEX = "thumbs.npy"
# Files and folders a writer makes; a folder holding only these is an index being built.
INDEX_ENTRIES = (".lock", ".lock.json", ".partial", "embeddings", "heads", "manifest.json")
INDEX_PREFIXES = ("items-", "skipped")
# what np.load raises for a damaged .npy file (a garbled header is parsed as Python literals)
_NPY_ERRORS = (OSError, ValueError, EOFError, SyntaxError, TokenError, MemoryError)


def is_index_entry(name: str) -> bool:
    """True for the names a writer gives files and folders (their temporary files included)."""
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:]
        return name.startswith((*INDEX_ENTRIES, *INDEX_PREFIXES))
    return name in INDEX_ENTRIES or name.startswith(INDEX_PREFIXES)


def set_key(modality: str, encoder_name: str) -> str:
    """Directory-safe key of an embedding set, e.g. ``poster__cnn-efficientnet-lite0``."""
    safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in encoder_name)
    return f"{modality}__{safe}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _damaged(path: Path, what: str) -> IndexStoreError:
    return IndexStoreError(
        f"index {path}: {what}. The index is damaged or was changed by hand; re-run "
        f"`embedgenre index CATALOG --out {path}` to repair it, or rebuild it in a new folder."
    )


def load_array(path: Path, what: str, root: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` without pickles, with damage reported as IndexStoreError."""
    if not path.is_file():
        raise _damaged(root, f"{what} ({path.name}) is missing")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except _NPY_ERRORS as e:
        raise _damaged(root, f"{what} ({path.name}) cannot be read: {e}") from e


def read_manifest(path: Path) -> Manifest:
    """The validated manifest of the index at ``path`` (IndexStoreError when absent or bad)."""
    manifest_path = path / MANIFEST
    if not path.exists():
        raise IndexStoreError(
            f"no index at {path}: the directory does not exist. "
            f"Build one with `embedgenre index CATALOG --out {path}`."
        )
    if not manifest_path.is_file():
        hint = (
            " An `embedgenre index` run was interrupted before its first commit; run the same "
            "command again to resume."
            if any(
                p.name in INDEX_ENTRIES or p.name.startswith(INDEX_PREFIXES) for p in path.iterdir()
            )
            else f" Build one with `embedgenre index CATALOG --out {path}`."
        )
        raise IndexStoreError(f"{path} is not an embedgenre index (no {MANIFEST}).{hint}")
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _damaged(path, f"{MANIFEST} is over {MAX_MANIFEST_BYTES >> 20} MB")
        doc = json.loads(manifest_path.read_bytes())
    except (OSError, ValueError) as e:
        raise _damaged(path, f"{MANIFEST} cannot be read ({e})") from e
    return parse_manifest(doc, path)


@dataclass
class EmbeddingSet:
    """One modality encoded by one encoder, row-aligned to a subset of the index's items.

    ``rows[i]`` is the position in ``GenreIndex.items`` of the item whose embedding is
    ``vectors[i]``; items without a plot (or with an unreadable poster) have no row.
    """

    key: str
    modality: str
    encoder: str
    dim: int
    space: str
    describe: dict
    directory: Path
    rows: np.ndarray
    # (m, dim), L2-normalised, memory-mapped when nothing was dropped; float32, or float16 when
    # the set is stored so (``dtype``): take rows with ``np.asarray(v[rows], np.float32)``
    vectors: np.ndarray
    ids: np.ndarray  # str (m,): the item id of each row
    faiss_kind: str = "flat"
    faiss_params: dict = field(default_factory=dict)
    dtype: str = "float32"
    thumbs: tuple[np.ndarray, np.ndarray] | None = None  # (bytes, (m, 2) offsets) row-aligned
    _stored_rows: int = 0  # rows in vectors.npy (more than ``rows`` when items were dropped)

    @cached_property
    def faiss_index(self):
        """The FAISS index over ``vectors``. Exact (flat) indexes are rebuilt from the vectors,
        which is as fast as reading them; trained ones are read from disk, rebuilt if unusable
        (:func:`embedgenre.ann.open_set_index`)."""
        whole = len(self.rows) == self._stored_rows
        return ann.open_set_index(self.directory, self.faiss_params, self.vectors, whole=whole)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest rows by inner product: (scores (q, k) float32, item rows (q, k) int64).

        Missing neighbours (k larger than the set) come back as row -1 with score -inf.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise IndexStoreError(
                f"query vectors have dim {queries.shape[1]} but embedding set {self.key!r} has "
                f"dim {self.dim}; encode queries with {self.encoder!r}."
            )
        scores, pos = self.faiss_index.search(queries, k)
        found = pos >= 0
        rows = np.full(pos.shape, -1, dtype=np.int64)
        rows[found] = self.rows[pos[found]]
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        return scores, rows

    def thumbnail(self, i: int) -> bytes | None:
        """The stored JPEG thumbnail of set row ``i`` (None when the set has none for it)."""
        if self.thumbs is None:
            return None
        data, offsets = self.thumbs
        start, length = (int(v) for v in offsets[i])
        return bytes(data[start : start + length]) if length > 0 else None


def _check_finite(vectors: np.ndarray, root: Path, key: str) -> None:
    step = max(1, (1 << 24) // max(1, vectors.shape[1]))
    for start in range(0, len(vectors), step):
        if not np.isfinite(vectors[start : start + step]).all():
            raise _damaged(root, f"embedding set {key!r} holds NaN or infinite values")


def _open_set(root: Path, entry: SetEntry, row_of: dict[str, int]) -> EmbeddingSet:
    directory = inside(root, entry.dir, f"set {entry.key!r} dir")
    ids = load_array(directory / "ids.npy", f"set {entry.key!r} ids", root)
    vectors = load_array(directory / "vectors.npy", f"set {entry.key!r} vectors", root, mmap=True)
    hashes = load_array(directory / "hashes.npy", f"set {entry.key!r} hashes", root, mmap=True)
    dim = entry.encoder.dim
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise _damaged(root, f"set {entry.key!r} ids.npy is not a 1-D array of strings")
    if hashes.ndim != 1 or hashes.dtype.kind != "U":
        raise _damaged(root, f"set {entry.key!r} hashes.npy is not a 1-D array of strings")
    if vectors.ndim != 2 or vectors.dtype != np.dtype(entry.dtype):
        raise _damaged(
            root,
            f"set {entry.key!r} vectors.npy has shape {vectors.shape} and dtype {vectors.dtype}, "
            f"expected ({len(ids)}, {dim}) {entry.dtype}",
        )
    if vectors.shape != (len(ids), dim) or len(hashes) != len(ids) or len(ids) != entry.count:
        raise _damaged(
            root,
            f"set {entry.key!r} disagrees with itself: {vectors.shape[0]} vectors of dim "
            f"{vectors.shape[1]}, {len(ids)} ids, {len(hashes)} hashes, manifest says "
            f"{entry.count} rows of dim {dim}",
        )
    _check_finite(vectors, root, entry.key)
    rows = np.array([row_of.get(str(i), -1) for i in ids], dtype=np.int64)
    keep = None
    if (rows < 0).any():  # items removed from the catalog since this set was written
        keep = np.flatnonzero(rows >= 0)
        rows = rows[keep]
        vectors = np.ascontiguousarray(vectors[keep])
        ids = ids[keep]
    thumbs = _open_thumbs(root, entry, directory, len(ids)) if entry.thumbnails else None
    if thumbs is not None and keep is not None:
        thumbs = (thumbs[0], thumbs[1][keep])
    faiss_kind = entry.faiss.get("kind", "flat")
    _check_faiss_kind(root, entry.key, faiss_kind)
    return EmbeddingSet(
        key=entry.key,
        modality=entry.modality,
        encoder=entry.encoder.name,
        dim=dim,
        space=entry.encoder.space,
        describe=entry.encoder.to_dict(),
        directory=directory,
        rows=rows,
        vectors=vectors,
        ids=ids,
        faiss_kind=faiss_kind,
        faiss_params=dict(entry.faiss),
        dtype=entry.dtype,
        thumbs=thumbs,
        _stored_rows=len(ids),
    )


def _check_faiss_kind(root: Path, key: str, kind_string: str) -> None:
    """Refuse a FAISS kind string that names an unknown kind or parameter, or a value FAISS does
    not take: some (``nlist=0``, ``M=1``) crash the process instead of raising."""
    problem = ann.saved_kind_problem(kind_string)
    if problem is not None:
        raise _damaged(root, f"set {key!r} names {problem}")


def _open_thumbs(root: Path, entry: SetEntry, directory: Path, n: int):
    data = load_array(directory / THUMBS_BIN, f"set {entry.key!r} thumbnails", root, mmap=True)
    offsets = load_array(directory / THUMBS_INDEX, f"set {entry.key!r} thumbnail index", root)
    ok = (
        data.ndim == 1
        and data.dtype == np.uint8
        and offsets.shape == (n, 2)
        and offsets.dtype.kind == "i"
        and (offsets >= 0).all()
        and (offsets[:, 0] <= len(data)).all()
        and (offsets[:, 1] <= len(data) - offsets[:, 0]).all()  # no overflow of start + length
    )
    if not ok:
        raise _damaged(root, f"set {entry.key!r} thumbnails do not match its rows")
    return data, offsets


class GenreIndex:
    """Read access to an index directory. Open with :meth:`GenreIndex.open`."""

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._table = self._read_items()
        self.ids: list[str] = self._table.column("id").to_pylist()
        self.row_of: dict[str, int] = {item_id: i for i, item_id in enumerate(self.ids)}
        self.sets: list[EmbeddingSet] = [_open_set(path, e, self.row_of) for e in manifest.sets]
        self.skipped: list[dict] = self._read_skipped()

    @classmethod
    def open(cls, path: str | Path) -> GenreIndex:
        path = Path(path)
        return cls(path, read_manifest(path))

    @property
    def generation(self) -> int:
        return self.manifest.generation

    # -- items ---------------------------------------------------------------------------

    def _read_items(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = inside(self.path, self.manifest.items_file, "manifest.items_file")
        if not path.is_file():  # a folder would be read as a dataset, a FIFO would block
            raise _damaged(self.path, f"item table {path.name} is missing or not a regular file")
        try:
            # one file, not a dataset: pq.read_table would import pyarrow.dataset and pandas
            with pq.ParquetFile(path) as parquet:
                table = parquet.read()
        except (OSError, pa.ArrowException, ValueError) as e:
            raise _damaged(
                self.path, f"item table {path.name} is not a readable parquet file ({e})"
            ) from e
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise _damaged(self.path, f"item table {path.name} has no {', '.join(missing)} column")
        for name in ("title", "year", "plot", "poster"):
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(len(table)))
        ids = table.column("id")
        if not pa.types.is_string(ids.type) or ids.null_count:
            raise _damaged(self.path, f"item table {path.name} has ids that are not strings")
        genres = table.column("genres").type
        if not (
            pa.types.is_list(genres)
            and (pa.types.is_string(genres.value_type) or pa.types.is_null(genres.value_type))
        ):
            raise _damaged(
                self.path, f"item table {path.name}: genres is not a list of strings ({genres})"
            )
        if len(set(ids.to_pylist())) != len(table):
            raise _damaged(self.path, f"item table {path.name} repeats an id")
        return table

    @property
    def genres(self) -> list[str]:
        """The genres some item carries, in the index's kept vocabulary order: the columns of
        :attr:`labels` and the classes of heads trained now (retired genres are left out)."""
        return self.manifest.vocabulary.active

    @property
    def retired_genres(self) -> list[str]:
        """Genres of the vocabulary that no item carries any more (kept until dropped)."""
        return self.manifest.vocabulary.retired

    @cached_property
    def items(self) -> list[dict]:
        """One dict per movie: id, title, year, genres (list), plot (str or None), poster (str or None)."""
        cols = ["id", "title", "year", "genres", "plot", "poster"]
        return self._table.select(cols).to_pylist()

    @cached_property
    def labels(self) -> np.ndarray:
        """uint8 (n_items, n_genres) multi-hot, row-aligned with :attr:`ids`."""
        col = {g: j for j, g in enumerate(self.genres)}
        Y = np.zeros((len(self.ids), len(col)), dtype=np.uint8)
        for i, genres in enumerate(self._table.column("genres").to_pylist()):
            for g in genres or ():
                if g in col:
                    Y[i, col[g]] = 1
        return Y

    def _read_skipped(self) -> list[dict]:
        if not self.manifest.skipped_file:
            return []
        path = inside(self.path, self.manifest.skipped_file, "manifest.skipped_file")
        if path.exists() and not path.is_file():  # never read a FIFO or a device
            raise _damaged(self.path, f"{path.name} is not a regular file")
        try:
            recs = json.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise _damaged(self.path, f"{path.name} cannot be read ({e})") from e
        if not isinstance(recs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) for r in recs
        ):
            raise _damaged(self.path, f"{path.name} is not a list of skipped posters")
        return recs

    def thumbnail(self, item_id: str) -> bytes | None:
        """The JPEG thumbnail stored for ``item_id`` at index time (None when there is none)."""
        row = self.row_of.get(item_id)
        if row is None:
            return None
        for s in sorted(self.sets, key=lambda s: s.key != self.manifest.defaults.get("poster")):
            if s.modality == "poster" and s.thumbs is not None:
                hit = np.flatnonzero(s.rows == row)
                if len(hit):
                    return s.thumbnail(int(hit[0]))
        return None

    # -- embedding sets ------------------------------------------------------------------

    def get_set(self, modality: str, encoder: str | None = None) -> EmbeddingSet:
        """The embedding set of ``modality`` ("poster" or "plot") by ``encoder`` (None: default)."""
        if modality not in SET_MODALITIES:
            raise IndexStoreError(
                f"unknown modality {modality!r}; expected one of {SET_MODALITIES}."
            )
        candidates = [s for s in self.sets if s.modality == modality]
        available = ", ".join(f"{s.modality}:{s.encoder}" for s in self.sets) or "none"
        if not candidates:
            raise IndexStoreError(
                f"index {self.path} has no {modality} embeddings (it holds: {available}). "
                f"Add them with `embedgenre index CATALOG --out {self.path} "
                f"--{'image' if modality == 'poster' else 'text'}-encoder NAME`."
            )
        if encoder is None:
            default = self.manifest.defaults.get(modality)
            return next((s for s in candidates if s.key == default), candidates[0])
        for s in candidates:
            if encoder in (s.encoder, s.key):
                return s
        raise IndexStoreError(
            f"index {self.path} has no {modality} embeddings by {encoder!r}; it holds: {available}."
        )

    # -- heads ---------------------------------------------------------------------------

    @property
    def heads(self) -> list[HeadRecord]:
        """The saved heads, as the index's current manifest names them: a head saved after this
        reader opened its generation (by ``train``) is found too; its fit is checked against
        this reader's embedding sets when it is loaded."""
        try:
            return list(read_manifest(self.path).heads)
        except IndexStoreError:
            return list(self.manifest.heads)

    def head_dir(self, name: str) -> Path | None:
        """The folder of saved head ``name`` (a plain name, never a path), or None."""
        check_name(name)
        rec = next((h for h in self.heads if h.name == name), None)
        return inside(self.path, rec.dir, f"head {name!r} dir") if rec else None

    def __repr__(self) -> str:
        sets = ", ".join(f"{s.modality}:{s.encoder}({len(s.rows)})" for s in self.sets)
        return f"GenreIndex({str(self.path)!r}, items={len(self.ids)}, sets=[{sets}])"


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def describe_index(path: str | Path) -> dict:
    """A JSON-ready summary of an index: counts, genres with counts, embedding sets, heads."""
    idx = GenreIndex.open(path)
    m = idx.manifest
    posters = [s for s in idx.sets if s.modality == "poster"]
    counts = {
        "items": len(idx.ids),
        "with_poster": int(len(idx.get_set("poster").rows)) if posters else 0,
        "with_plot": int(m.counts.get("with_plot", 0)),
        "skipped_posters": len(idx.skipped),
    }
    return {
        "path": str(idx.path),
        "format_version": m.to_dict()["format_version"],
        "generation": m.generation,
        "complete": m.complete,
        "created": m.created,
        "updated": m.updated,
        "catalog": m.catalog.get("path"),
        "counts": counts,
        "genres": dict(m.genre_counts),
        "retired_genres": idx.retired_genres,
        "sets": [
            {
                "key": s.key,
                "modality": s.modality,
                "encoder": s.encoder,
                "dim": s.dim,
                "count": int(len(s.rows)),
                "space": s.space,
                "default": m.defaults.get(s.modality) == s.key,
                "faiss": s.faiss_kind,
                "dtype": s.dtype,
                "thumbnails": s.thumbs is not None,
                "bytes": _dir_bytes(s.directory),
            }
            for s in idx.sets
        ],
        "heads": sorted(h.name for h in m.heads),
        "bytes": _dir_bytes(idx.path),
    }
