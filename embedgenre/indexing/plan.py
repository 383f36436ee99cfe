"""Planning an index run: what the catalog holds now (content hashes), which encoders the index
gets, and for each embedding set which rows are kept, which are resumed from ``.partial/`` and
which must be encoded. Nothing here writes to the index."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedgenre import encoders
from embedgenre.engines import Skip
from embedgenre.errors import IndexMismatchError, IndexStoreError, PosterError
from embedgenre.images import check_poster_file, open_regular
from embedgenre.names import encoder_name_path
from embedgenre.store.reader import GenreIndex
from embedgenre.store.rows import ChunkRows, RowSource, StoredRows, unpack_thumbs
from embedgenre.store.schema import EncoderInfo, Manifest, SetEntry
from embedgenre.store.writer import IndexWriter

if TYPE_CHECKING:
    from embedgenre.catalog import Catalog, Item
    from embedgenre.indexing.options import IndexOptions

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.json"  # in .partial/<key>/: what the chunks were encoded with


def sha1_text(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Contents:
    """What one run indexes: the catalog, its items and the content hash of each item's poster
    bytes and plot text (None where there is none, or the poster cannot be read)."""

    catalog: Catalog
    items: list[Item]
    poster_hash: list[str | None]
    plot_hash: list[str | None]
    unreadable: dict[str, Skip]  # posters that could not even be hashed, by item id

    @classmethod
    def of(cls, catalog: Catalog) -> Contents:
        items = catalog.items
        poster_hash, unreadable = hash_posters(items)
        plot_hash = [sha1_text(it.plot_text) if it.plot_text else None for it in items]
        return cls(catalog, items, poster_hash, plot_hash, unreadable)

    def hashes(self, modality: str) -> list[str | None]:
        return self.poster_hash if modality == "poster" else self.plot_hash

    @property
    def n_plots(self) -> int:
        return sum(h is not None for h in self.plot_hash)


@dataclass
class SetPlan:
    """What one embedding set needs: the items to encode and the rows that can be kept."""

    modality: str
    encoder_name: str
    key: str
    todo: list[int] = field(default_factory=list)  # item positions to encode
    parts: list[RowSource] = field(default_factory=list)  # rows kept, resumed, encoded
    reused: int = 0
    resumed: int = 0
    old_entry: SetEntry | None = None
    partial_encoder: EncoderInfo | None = None

    def keep(self, part: RowSource, current: dict[str, str], done: set[str]) -> int:
        """Keep the rows of ``part`` whose hash is still the item's and that no earlier part
        gave; ``done`` gains their ids. Returns how many were kept."""
        keep = np.array(
            [
                current.get(str(i)) == str(h) and str(i) not in done
                for i, h in zip(part.ids, part.hashes)
            ],
            bool,
        )
        if not keep.any():
            return 0
        self.parts.append(part.take(keep))
        done.update(str(i) for i in part.ids[keep])
        return int(keep.sum())


def open_existing(writer: IndexWriter) -> GenreIndex | None:
    """The committed generation, or None for a new index. A generation whose files cannot be
    read is re-encoded (what ``.partial/`` holds is still used), never trusted."""
    if writer.current is None:
        return None
    try:
        return GenreIndex(writer.path, writer.current)
    except IndexStoreError as e:
        logger.warning("%s; re-encoding it", e)
        return None


def choose_encoders(
    manifest: Manifest | None, out: Path, options: IndexOptions, n_plots: int
) -> list[tuple[str, str]]:
    """The (modality, encoder name) pairs the index gets: those it holds plus those asked for
    (only with ``options.add``); for a new index, defaults for a modality not asked for."""
    existing = []
    if manifest is not None:  # the encoders asked for before, whether or not they produced a set
        recorded = manifest.encoders or [
            {"modality": e.modality, "name": e.encoder.name} for e in manifest.sets
        ]
        existing = [(e["modality"], e["name"]) for e in recorded]
    asked: list[tuple[str, str]] = []
    asked += [("poster", n) for n in options.image_encoders or ()]
    asked += [("plot", n) for n in options.text_encoders or ()]
    for modality, name in asked:
        _refuse_weights_path(modality, name)
    if not existing:  # a new index, or one killed before its first commit
        if not options.image_encoders:
            asked.insert(0, ("poster", encoders.default_image_encoder_name()))
        if not options.text_encoders:
            asked.append(("plot", encoders.default_text_encoder_name(n_plots)))
        return asked
    new = [a for a in asked if a not in existing]
    if new and not options.add:
        held = ", ".join(f"{m}:{n}" for m, n in existing)
        names = ", ".join(f"{m}:{n}" for m, n in new)
        raise IndexMismatchError(
            f"index {out} was built with {held}; you asked for {names}.",
            "Fix: add the new encoder(s) to this index (one embedding set per encoder), or "
            "build a separate index in a new folder.",
            param="add",
        )
    return existing + new


def _refuse_weights_path(modality: str, name: str) -> None:
    path = encoder_name_path(name)
    if path is None:
        return
    family, _, body = name.partition(":")
    model = body.split("@", 1)[0]
    plain = {"clip": f"clip:{model}@NAME", "cnn": f"cnn:{model}", "timm": f"timm:{model}"}
    as_name = plain.get(family, "st:NAME")
    raise IndexStoreError(
        f"{modality} encoder {name!r} names a weights file or folder ({path!r}); an index "
        "names its encoders by registry name, so that opening it never loads a file "
        f"outside it. Fix: import the weights once (`embedgenre models import {path} "
        f"--as {as_name}`) and build the index with {as_name}."
    )


def preprocessing_changed(entry: SetEntry | None, name: str) -> bool:
    """True when the set's recorded image preprocessing differs from what ``name`` uses now
    (known without loading the model only for some families; unknown counts as unchanged)."""
    if entry is None:
        return False
    now = encoders.preprocessing(name)
    was = entry.encoder.extra.get("preprocessing")
    if now is None or was is None:
        return False
    return json.loads(json.dumps(now)) != was  # as the manifest stores it: tuples become lists


def read_set(directory: Path, entry: SetEntry) -> StoredRows:
    """The rows of a committed set (validated when the index was opened): ids and hashes."""
    ids = np.load(directory / "ids.npy", allow_pickle=False)
    hashes = np.load(directory / "hashes.npy", allow_pickle=False)
    return StoredRows(ids, hashes, directory, np.arange(len(ids)), entry.thumbnails)


def read_partial_encoder(partial: Path) -> EncoderInfo | None:
    """The encoder an interrupted run recorded for its chunks in ``partial``, if any."""
    try:
        return EncoderInfo.of(json.loads((partial / ENCODER_FILE).read_bytes()))
    except (OSError, ValueError, IndexStoreError):
        return None


def read_chunks(partial: Path, encoder: EncoderInfo | None) -> Iterator[ChunkRows]:
    """The chunks an interrupted run saved in ``partial`` that can be trusted, in file order."""
    for path in sorted(partial.glob("chunk-*.npz")):
        part = _read_chunk(path, encoder)
        if part is not None:
            yield part


def _read_chunk(path: Path, encoder: EncoderInfo | None) -> ChunkRows | None:
    """One chunk an interrupted run saved (checked whole, then only its ids kept in memory),
    or None when it cannot be trusted."""
    if encoder is None:
        logger.warning("ignoring %s: no record of the encoder that made it", path)
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, hashes, vectors = z["ids"], z["hashes"], z["vectors"]
            thumbs = unpack_thumbs(z["thumb_data"], z["thumb_len"]) if "thumb_len" in z else None
    except Exception as e:  # a chunk is written atomically; still, never trust it blindly
        logger.warning("ignoring unreadable partial chunk %s (%s)", path, e)
        return None
    n = len(ids)
    ok = (
        ids.ndim == 1
        and hashes.shape == (n,)
        and vectors.shape == (n, encoder.dim)
        and vectors.dtype == np.float32
        and np.isfinite(vectors).all()
        and (thumbs is None or len(thumbs) == n)
    )
    if not ok:
        logger.warning("ignoring partial chunk %s: its arrays do not agree", path)
        return None
    return ChunkRows(ids.astype(str), hashes.astype(str), path, None, thumbs is not None)


def hash_posters(items: list[Item]) -> tuple[list[str | None], dict[str, Skip]]:
    """SHA-1 of each poster file, checked first to be a regular image file under the size cap
    (a FIFO, a device or a huge sparse file is refused unread); failures are listed, not raised."""
    hashes: list[str | None] = []
    unreadable: dict[str, Skip] = {}
    for it in items:
        if not it.poster:
            hashes.append(None)
            continue
        path = Path(it.poster)
        try:
            check_poster_file(path)
            with open_regular(path) as f:
                hashes.append(hashlib.file_digest(f, "sha1").hexdigest())
        except PosterError as e:
            hashes.append(None)
            unreadable[it.id] = Skip(it.id, str(path), _reason(e, path))
        except OSError as e:
            hashes.append(None)
            unreadable[it.id] = Skip(it.id, str(path), f"cannot read: {e}")
    return hashes, unreadable


def _reason(e: PosterError, path: Path) -> str:
    """The part of a PosterError after ``poster PATH:``, as the skip list gives reasons."""
    return reason_text(str(e), path)


def reason_text(text: str, path: str | Path) -> str:
    """``text`` without a leading ``poster PATH:`` (the skip list names the path beside it)."""
    prefix = f"poster {path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
