"""GenreIndex: the on-disk index directory that every predictor, evaluation and search reads.

Layout of an index directory::

    manifest.json                      the commit point: format, genres, counts, embedding sets
    items-<gen>.parquet                one row per movie: id, title, year, genres, plot, poster, hashes
    skipped.json                       posters that could not be read, with the reason
    embeddings/<key>-<gen>/            one directory per embedding set (modality x encoder)
        vectors.npy                    float32 (m, dim), L2-normalised: the source of truth
        ids.npy                        the item id of each row (unicode array, no pickle)
        hashes.npy                     content hash each row was encoded from (for incremental runs)
        faiss.index                    derived search index (rebuilt from vectors if missing)
    heads/<name>/                      trained predictors (arrays + JSON)
    .partial/<key>/chunk-*.npz         encoded-but-not-committed work of an interrupted run

Every file is written aside and renamed into place, and ``manifest.json`` is replaced last, so a
reader never sees a half-written index: data files carry a generation number and the manifest names
the ones that are current. Files no manifest names are removed by the next write.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.errors import IndexStoreError

logger = logging.getLogger(__name__)

FORMAT = "embedgenre-index"
FORMAT_VERSION = 1
MODALITIES = ("poster", "plot")
MANIFEST = "manifest.json"


def set_key(modality: str, encoder_name: str) -> str:
    """Directory-safe key of an embedding set, e.g. ``poster__cnn-efficientnet-lite0``."""
    safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in encoder_name)
    return f"{modality}__{safe}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------- reading


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
    faiss_kind: str = "flat"
    faiss_params: dict = field(default_factory=dict)
    _keep: np.ndarray | None = None  # which stored rows belong to current items

    @cached_property
    def vectors(self) -> np.ndarray:
        """float32 (m, dim), L2-normalised, memory-mapped from ``vectors.npy``."""
        v = np.load(self.directory / "vectors.npy", mmap_mode="r")
        if self._keep is not None:
            v = np.ascontiguousarray(v[self._keep])
        return v

    @property
    def ids(self) -> np.ndarray:
        return np.load(self.directory / "ids.npy")[self._keep if self._keep is not None else ...]

    @cached_property
    def faiss_index(self):
        """The FAISS index over ``vectors`` (loaded from disk; rebuilt if missing or stale)."""
        from embedgenre import ann

        path = self.directory / "faiss.index"
        if path.exists() and self._keep is None:
            try:
                index = ann.load_faiss_index(path)
                if index.ntotal == len(self.rows) and index.d == self.dim:
                    return index
                logger.warning("FAISS index %s is stale; rebuilding it from vectors.npy", path)
            except Exception as e:  # a derived file: rebuild rather than fail
                logger.warning("could not read %s (%s); rebuilding it from vectors.npy", path, e)
        index, _ = ann.build_faiss_index(np.asarray(self.vectors), kind=self.faiss_kind)
        return index

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
        rows = np.where(pos >= 0, self.rows[np.clip(pos, 0, None)], -1).astype(np.int64)
        scores = np.where(pos >= 0, scores, -np.inf).astype(np.float32)
        return scores, rows


class GenreIndex:
    """Read access to an index directory. Open with :meth:`GenreIndex.open`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path) -> GenreIndex:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.exists():
            raise IndexStoreError(
                f"no index at {path}: the directory does not exist. "
                f"Build one with `embedgenre index CATALOG --out {path}`."
            )
        if not manifest_path.exists():
            hint = (
                " An interrupted `embedgenre index` run left work in .partial/; run the same "
                "command again to resume."
                if (path / ".partial").exists()
                else f" Build one with `embedgenre index CATALOG --out {path}`."
            )
            raise IndexStoreError(f"{path} is not an embedgenre index (no {MANIFEST}).{hint}")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise IndexStoreError(
                f"cannot read {manifest_path}: {e}. The index is damaged; rebuild it with "
                f"`embedgenre index CATALOG --out {path}`."
            ) from e
        if manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{manifest_path} is not an embedgenre index manifest.")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexStoreError(
                f"{path} has index format version {manifest.get('format_version')}, this "
                f"embedgenre reads version {FORMAT_VERSION}; rebuild it with `embedgenre index`."
            )
        return cls(path, manifest)

    # -- items ---------------------------------------------------------------------------

    @property
    def genres(self) -> list[str]:
        return list(self.manifest["genres"])

    @cached_property
    def _table(self):
        import pyarrow.parquet as pq

        return pq.read_table(self.path / self.manifest["items_file"])

    @cached_property
    def ids(self) -> list[str]:
        return self._table.column("id").to_pylist()

    @cached_property
    def items(self) -> list[dict]:
        """One dict per movie: id, title, year, genres (list), plot (str or None), poster (str or None)."""
        cols = ["id", "title", "year", "genres", "plot", "poster"]
        return self._table.select(cols).to_pylist()

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.ids)}

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

    @property
    def skipped(self) -> list[dict]:
        path = self.path / "skipped.json"
        return json.loads(path.read_text()) if path.exists() else []

    # -- embedding sets ------------------------------------------------------------------

    @cached_property
    def sets(self) -> list[EmbeddingSet]:
        out = []
        for entry in self.manifest.get("sets", []):
            directory = self.path / entry["dir"]
            ids = np.load(directory / "ids.npy")
            rows = np.array([self.row_of.get(str(i), -1) for i in ids], dtype=np.int64)
            keep = None
            if (rows < 0).any():  # items removed from the catalog since this set was written
                keep = np.flatnonzero(rows >= 0)
                rows = rows[keep]
            enc = entry["encoder"]
            out.append(
                EmbeddingSet(
                    key=entry["key"],
                    modality=entry["modality"],
                    encoder=enc["name"],
                    dim=int(enc["dim"]),
                    space=enc.get("space", enc["name"]),
                    describe=enc,
                    directory=directory,
                    rows=rows,
                    faiss_kind=entry.get("faiss", {}).get("kind", "flat"),
                    faiss_params=entry.get("faiss", {}),
                    _keep=keep,
                )
            )
        return out

    def get_set(self, modality: str, encoder: str | None = None) -> EmbeddingSet:
        """The embedding set of ``modality`` ("poster" or "plot") by ``encoder`` (None: default)."""
        if modality not in MODALITIES:
            raise IndexStoreError(f"unknown modality {modality!r}; expected one of {MODALITIES}.")
        candidates = [s for s in self.sets if s.modality == modality]
        available = ", ".join(f"{s.modality}:{s.encoder}" for s in self.sets) or "none"
        if not candidates:
            raise IndexStoreError(
                f"index {self.path} has no {modality} embeddings (it holds: {available}). "
                f"Add them with `embedgenre index CATALOG --out {self.path} "
                f"--{'image' if modality == 'poster' else 'text'}-encoder NAME`."
            )
        if encoder is None:
            default = self.manifest.get("defaults", {}).get(modality)
            return next((s for s in candidates if s.key == default), candidates[0])
        for s in candidates:
            if encoder in (s.encoder, s.key):
                return s
        raise IndexStoreError(
            f"index {self.path} has no {modality} embeddings by {encoder!r}; it holds: {available}."
        )

    def load_encoder(self, emb: EmbeddingSet, device: str = "cpu"):
        """The encoder that built ``emb``, to embed queries in the same space."""
        from embedgenre.encoders import create_encoder

        encoder = create_encoder(emb.encoder, device=device)
        if getattr(encoder, "fitted_on_catalog", False):  # e.g. hybrid: its fit is in the set
            encoder.load_state(emb.directory)
        return encoder

    @property
    def heads_dir(self) -> Path:
        return self.path / "heads"

    def __repr__(self) -> str:
        sets = ", ".join(f"{s.modality}:{s.encoder}({len(s.rows)})" for s in self.sets)
        return f"GenreIndex({str(self.path)!r}, items={len(self.ids)}, sets=[{sets}])"


def remove_unreferenced(path: Path, manifest: dict) -> None:
    """Delete data files and set directories that ``manifest`` no longer names."""
    keep_items = manifest.get("items_file")
    for f in path.glob("items-*.parquet"):
        if f.name != keep_items:
            f.unlink(missing_ok=True)
    keep_dirs = {e["dir"] for e in manifest.get("sets", [])}
    emb = path / "embeddings"
    if emb.exists():
        for d in emb.iterdir():
            if f"embeddings/{d.name}" not in keep_dirs:
                shutil.rmtree(d, ignore_errors=True)
    for f in path.glob(".*.tmp"):
        f.unlink(missing_ok=True)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def describe_index(path: str | Path) -> dict:
    """A JSON-ready summary of an index: counts, genres with counts, embedding sets, heads."""
    idx = GenreIndex.open(path)
    m = idx.manifest
    counts = {
        "items": len(idx.ids),
        "with_poster": int(len(idx.get_set("poster").rows))
        if any(s.modality == "poster" for s in idx.sets)
        else 0,
        "with_plot": int(m["counts"].get("with_plot", 0)),
        "skipped_posters": len(idx.skipped),
    }
    heads = (
        sorted(p.name for p in idx.heads_dir.iterdir() if p.is_dir())
        if idx.heads_dir.exists()
        else []
    )
    return {
        "path": str(idx.path),
        "format_version": m["format_version"],
        "complete": bool(m.get("complete")),
        "created": m.get("created"),
        "updated": m.get("updated"),
        "catalog": m.get("catalog", {}).get("path"),
        "counts": counts,
        "genres": dict(m["genre_counts"]),
        "sets": [
            {
                "key": s.key,
                "modality": s.modality,
                "encoder": s.encoder,
                "dim": s.dim,
                "count": int(len(s.rows)),
                "space": s.space,
                "default": m.get("defaults", {}).get(s.modality) == s.key,
                "faiss": s.faiss_kind,
                "bytes": _dir_bytes(s.directory),
            }
            for s in idx.sets
        ],
        "heads": heads,
        "bytes": _dir_bytes(idx.path),
    }
