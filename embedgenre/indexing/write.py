"""Writing an index run: each changed embedding set to a new generation folder, the item table
and skip list, and the manifest that commits them (built here without touching a file)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedgenre import __version__, ann
from embedgenre.encoders.base import Encoder
from embedgenre.errors import PosterError
from embedgenre.images import load_image, thumbnail_jpeg
from embedgenre.indexing.encode import keep_fit
from embedgenre.indexing.plan import Contents, SetPlan
from embedgenre.store import atomic
from embedgenre.store.reader import now_iso
from embedgenre.store.rows import write_set_files
from embedgenre.store.schema import EncoderInfo, Manifest, SetEntry
from embedgenre.store.writer import IndexWriter
from embedgenre.vocabulary import Vocabulary


def write_set(
    writer: IndexWriter,
    plan: SetPlan,
    contents: Contents,
    encoder: Encoder | None,
    *,
    dtype: str,
    faiss_kind: str,
    memory: int,
    device: str = "cpu",
) -> SetEntry | None:
    """Write the set in item order, its vectors as ``dtype``, to a new generation folder with
    its FAISS index (its k-means on ``device``), and return its entry; the old entry when nothing changed; None when the set
    has no rows and never had any."""
    old = plan.old_entry
    if not plan.parts and old is None:
        return None
    if encoder is None and _unchanged(plan, dtype):
        return old  # keep the committed folder as it is
    key, modality = plan.key, plan.modality
    writer.writable(f"embedding set {key} changed")
    order = {it.id: i for i, it in enumerate(contents.items)}
    info = (
        EncoderInfo.of(encoder.describe())
        if encoder is not None
        else (plan.partial_encoder if plan.resumed else None) or old.encoder
    )
    rel = f"embeddings/{key}-{writer.generation}"
    d = writer.new_dir(rel)
    make_thumb = _thumb_maker(contents.items, order)
    count = write_set_files(d, plan.parts, order, info.dim, dtype, modality == "poster", make_thumb)
    faiss_meta = {"kind": "flat"}
    if count:  # the index is built from the file: large sets are read shard by shard
        stored = np.load(d / "vectors.npy", mmap_mode="r", allow_pickle=False)
        faiss_meta = ann.write_set_index(stored, d, faiss_kind, memory, device=device)
    keep_fit(writer, plan, encoder, d)
    return SetEntry(
        key=key,
        modality=modality,
        dir=rel,
        encoder=info,
        count=count,
        faiss=faiss_meta,
        updated=now_iso(),
        thumbnails=modality == "poster",
        dtype=dtype,
    )


def _unchanged(plan: SetPlan, dtype: str) -> bool:
    """Whether the committed set already holds exactly what ``plan`` would write."""
    old = plan.old_entry
    return (
        old is not None
        and not plan.resumed
        and plan.reused == old.count
        and (old.thumbnails or plan.modality != "poster")
        and old.dtype == dtype
    )


def _thumb_maker(items, order: dict[str, int]):
    """make_thumb(item id) for rows stored without a thumbnail (sets written before they were
    kept): made from the poster file, None when it cannot be read."""

    def make(item_id: str) -> bytes | None:
        try:
            return thumbnail_jpeg(load_image(items[order[item_id]].poster))
        except (PosterError, OSError, TypeError):
            return None

    return make


def next_manifest(
    old: Manifest | None,
    generation: int,
    contents: Contents,
    wanted: list[tuple[str, str]],
    sets: list[SetEntry],
    *,
    vocabulary: Vocabulary,
    skips: list[dict],
    old_skips: list[dict] | None,
    fresh_items: bool = False,
) -> Manifest | None:
    """The manifest that commits ``sets`` as ``generation`` (the commit's unique number, naming
    new files), or None when ``old`` already says exactly this. ``vocabulary``: the genres kept,
    with their counts; ``skips``: the skip list, sorted by id; ``old_skips``: what ``old``'s skip list file holds (None when it cannot be read)."""
    digest = items_digest(contents)
    same = old is not None and old.items_digest == digest and not fresh_items
    items_file = old.items_file if same else f"items-{generation}.parquet"
    if old is not None and old.skipped_file and skips == old_skips:
        skipped_file = old.skipped_file
    else:
        skipped_file = f"skipped-{generation}.json" if skips else None
    catalog, items = contents.catalog, contents.items
    keys = {e.key for e in sets}
    defaults = {m: k for m, k in (old.defaults if old else {}).items() if k in keys}
    for entry in sets:
        defaults.setdefault(entry.modality, entry.key)
    candidate = Manifest(
        generation=old.generation if old else 0,
        items_file=items_file,
        genres=list(vocabulary.genres),
        genre_counts=dict(vocabulary.counts),
        counts={
            "items": len(items),
            "with_plot": sum(1 for it in items if it.plot),
            "with_poster": sum(1 for it in items if it.poster),
            "skipped_posters": len(skips),
        },
        sets=sets,
        heads=list(old.heads) if old else [],
        skipped_file=skipped_file,
        defaults=defaults,
        encoders=[{"modality": m, "name": n} for m, n in wanted],
        complete=True,
        created=old.created if old and old.created else now_iso(),
        updated=old.updated if old else None,
        embedgenre_version=__version__,
        catalog={"path": str(Path(catalog.root).resolve())},
        items_digest=digest,
    )
    return None if old is not None and candidate == old else candidate


def write_run_files(
    writer: IndexWriter, manifest: Manifest, contents: Contents, skips: list[dict]
) -> None:
    """Write the item table and skip list ``manifest`` names that the committed one lacks."""
    old = writer.current
    writer.writable("the catalog's items changed")
    if old is None or manifest.items_file != old.items_file:
        _write_items(writer.path / manifest.items_file, contents)
    if manifest.skipped_file and (old is None or manifest.skipped_file != old.skipped_file):
        atomic.write_json(writer.path / manifest.skipped_file, skips, indent=1)


def read_skipped(writer: IndexWriter) -> list[dict] | None:
    """The committed skip list as stored ([] without one), or None when it cannot be read."""
    m = writer.current
    if m is None or not m.skipped_file:
        return []
    try:
        return json.loads((writer.path / m.skipped_file).read_bytes())
    except (OSError, ValueError):
        return None


def items_digest(contents: Contents) -> str:
    h = hashlib.sha1()
    for it, ph, th in zip(contents.items, contents.poster_hash, contents.plot_hash):
        row = [it.id, it.title, it.year, list(it.genres), it.plot, str(it.poster or ""), ph, th]
        h.update(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def _write_items(path: Path, contents: Contents) -> None:
    items = contents.items
    table = pa.table(
        {
            "id": [it.id for it in items],
            "title": [it.title for it in items],
            "year": pa.array([it.year for it in items], type=pa.int32()),
            "genres": pa.array([list(it.genres) for it in items], type=pa.list_(pa.string())),
            "plot": [it.plot for it in items],
            "poster": [str(it.poster) if it.poster else None for it in items],
            "poster_sha1": contents.poster_hash,
            "plot_sha1": contents.plot_hash,
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic.write_bytes(path, buf.getvalue())
