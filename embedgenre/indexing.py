"""Build or update an index directory from a catalog: hash, encode what changed, commit.

The pipeline is reader -> encoder -> writer, one embedding set (modality x encoder) at a time:

1. every item's content is hashed (poster bytes, plot text); a poster is first checked to be a
   regular image file under the size cap, so nothing else is ever read;
2. items whose (id, hash) is already in the set, or in the ``.partial/`` chunks an interrupted run
   left behind, are reused; the rest are encoded in chunks (vectors and poster thumbnails), each
   chunk saved atomically as soon as it is done (a killed run loses at most one chunk);
3. each changed set is written in item order to a new generation folder, and one manifest commit
   publishes the run (:class:`~embedgenre.store.writer.IndexWriter`, which holds the writer lock).

An encoder is only loaded when something needs encoding, and an unchanged catalog writes
nothing. Posters that cannot be read are skipped, listed in the skip list and the summary, and not
retried while their bytes stay the same (``strict=True`` makes the first one fatal).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embedgenre import __version__, ivfpq, vocabulary
from embedgenre.encoders.base import CatalogFittedEncoder
from embedgenre.encoders.registry import fitted_class
from embedgenre.engines import EncodeTask, Engine, LocalEngine, Part
from embedgenre.errors import EmbedgenreError, IndexMismatchError, IndexStoreError, PosterError
from embedgenre.images import check_poster_file, load_image, open_regular, thumbnail_jpeg
from embedgenre.names import encoder_name_path
from embedgenre.store import atomic
from embedgenre.store.reader import GenreIndex, now_iso, set_key
from embedgenre.store.rows import (
    ChunkRows,
    RowSource,
    StoredRows,
    save_chunk,
    unpack_thumbs,
    write_set_files,
)
from embedgenre.store.schema import VECTOR_DTYPES, EncoderInfo, Manifest, SetEntry
from embedgenre.store.writer import IndexWriter
from embedgenre.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 256
DEFAULT_BATCH = 32  # posters per batch on CPU; on a GPU (batch_size None) from its free memory
ENCODER_FILE = "encoder.json"  # in .partial/<key>/: what the chunks were encoded with


@dataclass
class SetSummary:
    key: str
    modality: str
    encoder: str
    dim: int
    count: int = 0  # rows in the set after this run
    encoded: int = 0  # newly encoded in this run
    resumed: int = 0  # taken from an interrupted run's chunks
    reused: int = 0  # unchanged rows carried over
    skipped: int = 0  # the catalog's posters left out of this set: missing or unreadable
    seconds: float = 0.0
    faiss: dict = field(default_factory=dict)


@dataclass
class IndexSummary:
    path: str
    items: int
    with_plot: int
    with_poster: int
    genres: dict[str, int]  # the index's vocabulary in its kept order, with counts (0: retired)
    sets: list[SetSummary]
    skipped: list[dict]
    seconds: float
    problems: list[str] = field(default_factory=list)
    up_to_date: bool = False  # the index already held exactly this: nothing was written
    new_genres: list[str] = field(default_factory=list)  # appended to the vocabulary by this run
    retired_genres: list[str] = field(default_factory=list)  # kept, though no item carries them
    dropped_genres: list[str] = field(default_factory=list)  # retired genres removed on request

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Job:
    """What one embedding set needs: the items to encode and what can be kept."""

    modality: str
    encoder_name: str
    key: str
    todo: list[int] = field(default_factory=list)  # item positions to encode
    parts: list[RowSource] = field(default_factory=list)  # rows kept, resumed, encoded
    reused: int = 0
    resumed: int = 0
    old_entry: SetEntry | None = None
    partial_encoder: EncoderInfo | None = None


def sha1_text(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def build_index(
    catalog,
    out: str | Path,
    image_encoders: Sequence[str] | None = None,
    text_encoders: Sequence[str] | None = None,
    *,
    add: bool = False,
    device: str = "cpu",
    backend: str = "auto",
    precision: str = "fp32",
    batch_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    strict: bool = False,
    progress: bool = False,
    encoder_factory: Callable | None = None,
    wait: float | None = 0,
    engine: Engine | None = None,
    faiss_kind: str = "auto",
    index_memory: int | str | None = None,
    vector_dtype: str | None = None,
    drop_unused_genres: bool = False,
) -> IndexSummary:
    """Encode ``catalog`` (a :class:`~embedgenre.catalog.Catalog`) into the index at ``out``.

    ``image_encoders`` / ``text_encoders``: registry names. None means the encoders the existing
    index already holds, or, for a new index, the best available offline defaults. Asking an
    existing index for encoders it does not hold is refused unless ``add=True``. ``wait``:
    seconds to wait for another writer of the index (0: refuse at once, None: for ever).
    ``backend`` / ``precision``: how the encoders run (see ``create_encoder``; "auto" measures
    the faster backend on this CPU once); what ran is recorded with each set in the manifest.
    ``engine``: what encodes (:class:`~embedgenre.engines.LocalEngine` when None, or
    :class:`~embedgenre.distributed.RayEngine`); whichever runs, the index is the same.
    ``batch_size``: posters per batch; None: 32, or on a GPU as many as half its free memory
    holds (a power of two, 32-1024).
    ``faiss_kind`` (``auto`` or a kind of :mod:`embedgenre.ann`, parameters allowed) and
    ``index_memory`` (bytes or ``"4GB"``) choose each changed set's FAISS index
    (:mod:`embedgenre.ivfpq`); the choice is recorded in the manifest. ``vector_dtype``: how
    each set's vectors are stored, "float32" or "float16" (half the disk and page cache; recall
    of exact search 0.9996 against float32 at 1M); None keeps what each set has (float32 for a
    new one). A set whose dtype changes is rewritten from its stored rows, without encoding.
    The index keeps its genre vocabulary (:func:`embedgenre.vocabulary.extend`): known genres
    keep their position so saved heads keep working, new ones are appended, and a genre no
    item carries any more stays (count 0) unless ``drop_unused_genres``.
    An unchanged catalog writes nothing; a run killed at any point resumes from its chunks.
    """
    from embedgenre import encoders as registry

    t0 = time.perf_counter()
    out = Path(out)
    chosen = {
        k: v
        for k, v in (("backend", backend), ("precision", precision))
        if v not in ("auto", "fp32")
    }
    factory = encoder_factory or (
        lambda name: registry.create_encoder(name, device=device, **chosen)
    )
    engine = engine or LocalEngine()
    memory = ivfpq.parse_memory(index_memory)
    ivfpq.check_kind(faiss_kind)  # a bad kind fails before anything is encoded
    _check_dtype(vector_dtype)
    if encoder_factory is None:
        _check_weights(registry, image_encoders, text_encoders, factory)
    items = catalog.items
    if not items:
        raise IndexStoreError(f"catalog {catalog.root} has no items; nothing to index.")

    with IndexWriter(
        out, wait=wait, new=True, command="embedgenre index", allow_read_only=True
    ) as writer:
        old = _open_existing(writer)
        poster_hash, missing = _hash_posters(items)
        if strict and missing:
            rec = next(iter(missing.values()))
            raise PosterError(
                f"{rec['path']}: {rec['reason']} ({len(missing)} poster(s) unreadable, and strict "
                "mode makes any unreadable poster fatal).",
                "Fix: repair them, or turn strict mode off to skip and list them.",
                param="strict",
            )
        plot_hash = [sha1_text(it.plot_text) if it.plot_text else None for it in items]
        n_plots = sum(h is not None for h in plot_hash)
        wanted = _choose_encoders(
            writer.current, out, image_encoders, text_encoders, add, registry, n_plots
        )
        old_skipped = {(s["id"], s.get("hash")): s for s in (old.skipped if old else [])}
        skipped: dict[str, dict] = dict(missing)
        gen = writer.generation
        written = False
        genres = vocabulary.extend(
            writer.current.genres if writer.current else None,
            catalog.genre_counts(),
            catalog.genres,
            drop_unused=drop_unused_genres,
        )
        run = _Run(catalog, items, poster_hash, plot_hash, wanted, genres.vocabulary)

        if writer.current is None:  # a new index opens from its first commit on
            writer.commit(_next_manifest(writer, run, [], skipped).evolve(complete=False))
        sets: list = []
        summaries = []
        for modality, name in wanted:
            hashes = poster_hash if modality == "poster" else plot_hash
            key = set_key(modality, name)
            job = _plan(writer, old, modality, name, key, items, hashes, skipped, old_skipped)
            if job.reused and _preprocessing_changed(job.old_entry, name, registry):
                logger.warning(
                    "%s: %s now prepares images differently from when this index was built; "
                    "re-encoding its %d stored posters",
                    key,
                    name,
                    job.reused,
                )
                job = _plan(writer, None, modality, name, key, items, hashes, skipped, old_skipped)
            summary = SetSummary(key=key, modality=modality, encoder=name, dim=0)
            t_set = time.perf_counter()
            encoder = None
            if job.todo:
                writer.writable(f"{len(job.todo)} {modality}(s) to encode for {key}")
                encoder = factory(name)
                if isinstance(encoder, CatalogFittedEncoder):
                    _prepare_fitted(encoder, writer, job, items)
                _check_compatible(job.old_entry, encoder, out)
                _remember_encoder(writer, job, encoder)
                logger.info(
                    "%s: encoding %d %ss with %s (%d reused, %d resumed)",
                    key,
                    len(job.todo),
                    modality,
                    name,
                    job.reused,
                    job.resumed,
                )
                task = EncodeTask(
                    key=key,
                    modality=modality,
                    encoder_name=name,
                    ids=[items[p].id for p in job.todo],
                    hashes=[hashes[p] for p in job.todo],
                    sources=[
                        str(items[p].poster) if modality == "poster" else items[p].plot_text
                        for p in job.todo
                    ],
                    batch_size=batch_size or DEFAULT_BATCH,
                    batch_from_memory=batch_size is None,
                    chunk_size=chunk_size,
                    progress=progress,
                    state_dir=writer.partial_dir(key),
                    options={"backend": backend, "precision": precision},
                )
                if modality == "poster" and precision != "fp32":
                    _check_precision(encoder, name, task.sources, precision, device)
                failed = 0
                for chunk, bad in engine.encode(task, encoder):
                    for rec in bad:
                        if strict:
                            raise PosterError(
                                f"{rec['path']}: {rec['reason']} (strict mode makes any "
                                "unreadable poster fatal).",
                                "Fix: repair it, or turn strict mode off to skip and list it.",
                                param="strict",
                            )
                        rec = {**rec, "reason": _reason_text(rec["reason"], rec["path"])}
                        skipped[rec["id"]] = rec
                        failed += 1
                    if len(chunk.ids):  # on disk first; the run keeps only its ids
                        job.parts.append(_save_chunk(writer, key, chunk))
                    summary.encoded += len(chunk.ids)
                if failed:
                    logger.info(
                        "%s: %d of the %d posters could not be read and were skipped",
                        key,
                        failed,
                        len(job.todo),
                    )
            dtype = vector_dtype or (job.old_entry.dtype if job.old_entry else "float32")
            at = (modality, key, faiss_kind, memory)  # the set, its index kind and budget
            entry = _consolidate(writer, job, items, gen, encoder, *at, dtype, device=device)
            if entry is None:  # e.g. a catalog without plots: no set to write
                logger.info("%s: no %ss in the catalog; no embedding set written", key, modality)
                continue
            sets.append(entry)
            summary.dim = entry.encoder.dim
            summary.count = entry.count
            summary.skipped = len(skipped) if modality == "poster" else 0
            summary.reused, summary.resumed = job.reused, job.resumed
            summary.seconds = round(time.perf_counter() - t_set, 3)
            summary.faiss = dict(entry.faiss)
            summaries.append(summary)
            if encoder is None and entry is job.old_entry:
                logger.info("%s: up to date (%d rows)", key, entry.count)

        manifest = _next_manifest(writer, run, sets, skipped, fresh_items=old is None)
        if manifest is None:
            logger.info("%s is up to date; nothing written", out)
        else:
            writer.commit(manifest)
            written = True
        for _, name in wanted:
            for modality in ("poster", "plot"):
                writer.clear_partial(set_key(modality, name))

    return IndexSummary(
        path=str(out),
        items=len(items),
        with_plot=n_plots,
        with_poster=sum(
            h is not None and it.id not in skipped for it, h in zip(items, poster_hash)
        ),
        genres=dict(genres.vocabulary.counts),
        sets=summaries,
        skipped=sorted(skipped.values(), key=lambda r: r["id"]),
        seconds=round(time.perf_counter() - t0, 3),
        problems=list(getattr(catalog, "problems", [])),
        up_to_date=not written,
        new_genres=genres.added if old is not None else [],
        retired_genres=genres.retired,
        dropped_genres=genres.dropped,
    )


@dataclass(frozen=True)
class _Run:
    """What one run indexes: the catalog, its items, their content hashes, the encoders."""

    catalog: object
    items: list
    poster_hash: list[str | None]
    plot_hash: list[str | None]
    wanted: list[tuple[str, str]]  # (modality, encoder name)
    vocabulary: Vocabulary  # the genres the manifest keeps, with their counts


def _next_manifest(
    writer: IndexWriter, run: _Run, sets, skipped, fresh_items: bool = False
) -> Manifest | None:
    """The manifest to commit, with the item table and skip list written if they changed;
    None when the index already says exactly this (an unchanged catalog writes nothing)."""
    catalog, items, poster_hash, plot_hash = run.catalog, run.items, run.poster_hash, run.plot_hash
    old = writer.current
    digest = _items_digest(items, poster_hash, plot_hash)
    same = old is not None and old.items_digest == digest and not fresh_items
    g = writer.generation  # the number of the commit this manifest is for: unique per commit
    items_file = old.items_file if same else f"items-{g}.parquet"
    recs = sorted(skipped.values(), key=lambda r: r["id"])
    old_recs = _read_skipped(writer) if old else None
    if old is not None and old.skipped_file and recs == old_recs:
        skipped_file = old.skipped_file
    else:
        skipped_file = f"skipped-{g}.json" if recs else None
    keys = {e.key for e in sets}
    defaults = {m: k for m, k in (old.defaults if old else {}).items() if k in keys}
    for entry in sets:
        defaults.setdefault(entry.modality, entry.key)
    candidate = Manifest(
        generation=old.generation if old else 0,
        items_file=items_file,
        genres=list(run.vocabulary.genres),
        genre_counts=dict(run.vocabulary.counts),
        counts={
            "items": len(items),
            "with_plot": sum(1 for it in items if it.plot),
            "with_poster": sum(1 for it in items if it.poster),
            "skipped_posters": len(recs),
        },
        sets=sets,
        heads=list(old.heads) if old else [],
        skipped_file=skipped_file,
        defaults=defaults,
        encoders=[{"modality": m, "name": n} for m, n in run.wanted],
        complete=True,
        created=old.created if old and old.created else now_iso(),
        updated=old.updated if old else None,
        embedgenre_version=__version__,
        catalog={"path": str(Path(catalog.root).resolve())},
        items_digest=digest,
    )
    if old is not None and candidate == old:
        return None
    writer.writable("the catalog's items changed")
    if old is None or items_file != old.items_file:
        _write_items(writer.path / items_file, items, poster_hash, plot_hash)
    if skipped_file and (old is None or skipped_file != old.skipped_file):
        atomic.write_json(writer.path / skipped_file, recs, indent=1)
    return candidate


def _items_digest(items, poster_hash, plot_hash) -> str:
    h = hashlib.sha1()
    for it, ph, th in zip(items, poster_hash, plot_hash):
        row = [it.id, it.title, it.year, list(it.genres), it.plot, str(it.poster or ""), ph, th]
        h.update(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def _read_skipped(writer: IndexWriter) -> list[dict] | None:
    m = writer.current
    if m is None or not m.skipped_file:
        return []
    try:
        return json.loads((writer.path / m.skipped_file).read_bytes())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- planning


def _open_existing(writer: IndexWriter) -> GenreIndex | None:
    """The committed generation, or None for a new index. A generation whose files cannot be
    read is re-encoded (what ``.partial/`` holds is still used), never trusted."""
    if writer.current is None:
        return None
    try:
        return GenreIndex(writer.path, writer.current)
    except IndexStoreError as e:
        logger.warning("%s; re-encoding it", e)
        return None


def _choose_encoders(
    manifest: Manifest | None, out: Path, image_encoders, text_encoders, add, registry, n_plots: int
) -> list[tuple[str, str]]:
    existing = []
    if manifest is not None:  # the encoders asked for before, whether or not they produced a set
        recorded = manifest.encoders or [
            {"modality": e.modality, "name": e.encoder.name} for e in manifest.sets
        ]
        existing = [(e["modality"], e["name"]) for e in recorded]
    asked: list[tuple[str, str]] = []
    asked += [("poster", n) for n in image_encoders or ()]
    asked += [("plot", n) for n in text_encoders or ()]
    for modality, name in asked:
        path = encoder_name_path(name)
        if path is not None:
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
    if not existing:  # a new index, or one killed before its first commit
        if not image_encoders:
            asked.insert(0, ("poster", registry.default_image_encoder_name()))
        if not text_encoders:
            asked.append(("plot", registry.default_text_encoder_name(n_plots)))
        return asked
    new = [a for a in asked if a not in existing]
    if new and not add:
        held = ", ".join(f"{m}:{n}" for m, n in existing)
        names = ", ".join(f"{m}:{n}" for m, n in new)
        raise IndexMismatchError(
            f"index {out} was built with {held}; you asked for {names}.",
            "Fix: add the new encoder(s) to this index (one embedding set per encoder), or "
            "build a separate index in a new folder.",
            param="add",
        )
    return existing + new


def _check_compatible(old_entry: SetEntry | None, encoder, out: Path) -> None:
    """Refuse to mix embeddings of a changed encoder into an existing set."""
    if old_entry is None:
        return
    was = old_entry.encoder.to_dict()
    now = encoder.describe()
    for field_name in ("dim", "space"):
        if was.get(field_name) != now.get(field_name):
            raise IndexMismatchError(
                f"encoder {encoder.name!r} now gives {field_name} {now.get(field_name)!r} but "
                f"the index at {out} was built with {field_name} {was.get(field_name)!r}; its "
                "embeddings cannot be mixed.",
                "Fix: build a new index in a new folder.",
                param="out",
            )


def _preprocessing_changed(entry: SetEntry | None, name: str, registry) -> bool:
    """True when the set's recorded image preprocessing differs from what ``name`` uses now
    (known without loading the model only for some families; unknown counts as unchanged)."""
    if entry is None:
        return False
    now = registry.preprocessing(name)
    was = entry.encoder.extra.get("preprocessing")
    if now is None or was is None:
        return False
    return json.loads(json.dumps(now)) != was  # as the manifest stores it: tuples become lists


def _state_source(writer: IndexWriter, job: _Job) -> Path | None:
    """Where the fit of a catalog-fitted encoder for ``job`` is stored: the interrupted run's
    ``.partial/`` (if it left chunks), else the committed set (if rows are reused)."""
    fitted = fitted_class(job.encoder_name)
    partial = writer.partial_dir(job.key)
    if fitted is None:
        return None
    if job.resumed and fitted.has_state(partial):
        return partial
    if job.old_entry is not None and fitted.has_state(writer.path / job.old_entry.dir):
        return writer.path / job.old_entry.dir
    return None


def _prepare_fitted(encoder, writer: IndexWriter, job: _Job, items) -> None:
    """Give an encoder fitted on the catalog (``hybrid:``) its fit before anything is encoded.

    Rows kept from before were embedded with the stored fit, so it is loaded again and new rows
    share their space; with nothing kept, it is fitted on the catalog's plots. Either way the fit
    is saved in ``.partial/`` first, so a killed run resumes with the same one.
    """
    source = _state_source(writer, job) if (job.reused or job.resumed) else None
    if source is not None:
        encoder.load_state(source)
        logger.info("%s: using the lexical fit stored in %s", job.key, source)
    else:
        if job.resumed:  # chunks of a run whose fit is lost cannot be matched: encode again
            raise IndexStoreError(
                f"{writer.partial_dir(job.key)} holds encoded plots without the fit they were "
                f"made with; delete {writer.path / '.partial'} and run the same command again"
            )
        encoder.fit([it.plot_text for it in items if it.plot_text])
        job.old_entry = None  # nothing is kept, so a new fit mixes with nothing
    encoder.save_state(writer.partial_dir(job.key))


def _remember_encoder(writer: IndexWriter, job: _Job, encoder) -> None:
    """Record in ``.partial/`` which encoder the chunks come from, so a run killed after its
    last chunk commits them without loading the model again."""
    path = writer.partial_dir(job.key) / ENCODER_FILE
    desc = encoder.describe()
    if job.resumed and job.partial_encoder is not None:
        was = job.partial_encoder.to_dict()
        if (was["dim"], was["space"]) != (desc.get("dim"), desc.get("space")):
            raise IndexStoreError(
                f"{writer.partial_dir(job.key)} holds chunks of {was['name']} with "
                f"dim {was['dim']}, space {was['space']!r}, but the encoder now gives dim "
                f"{desc.get('dim')}, space {desc.get('space')!r}; delete "
                f"{writer.path / '.partial'} and run the same command again"
            )
    atomic.write_json(path, desc)


def _plan(writer, old, modality, name, key, items, hashes, skipped, old_skipped) -> _Job:
    job = _Job(modality, name, key)
    unreadable = skipped if modality == "poster" else {}
    current = {
        it.id: h for it, h in zip(items, hashes) if h is not None and it.id not in unreadable
    }
    done: set[str] = set()
    if old is not None:
        entry = old.manifest.set_by_key(key)
        job.old_entry = entry
        if entry is not None:
            part = _read_set(writer.path / entry.dir, entry)
            keep = np.array(
                [current.get(str(i)) == str(h) for i, h in zip(part.ids, part.hashes)], bool
            )
            if keep.any():
                job.parts.append(part.take(keep))
                done.update(str(i) for i in part.ids[keep])
                job.reused = int(keep.sum())
    partial = writer.partial_dir(key)
    job.partial_encoder = _read_partial_encoder(partial)
    for path in sorted(partial.glob("chunk-*.npz")):
        part = _read_chunk(path, job.partial_encoder)
        if part is None:
            continue
        keep = np.array(
            [
                current.get(str(i)) == str(h) and str(i) not in done
                for i, h in zip(part.ids, part.hashes)
            ],
            bool,
        )
        if keep.any():
            job.parts.append(part.take(keep))
            done.update(str(i) for i in part.ids[keep])
            job.resumed += int(keep.sum())
    for pos, (it, h) in enumerate(zip(items, hashes)):
        if h is None or it.id in done:
            continue
        if modality == "poster" and (it.id, h) in old_skipped:
            skipped[it.id] = old_skipped[(it.id, h)]  # same bytes failed before; don't retry
            continue
        job.todo.append(pos)
    return job


def _read_partial_encoder(partial: Path) -> EncoderInfo | None:
    try:
        return EncoderInfo.of(json.loads((partial / ENCODER_FILE).read_bytes()))
    except (OSError, ValueError, IndexStoreError):
        return None


def _read_set(directory: Path, entry: SetEntry) -> StoredRows:
    """The rows of a committed set (validated when the index was opened): ids and hashes."""
    ids = np.load(directory / "ids.npy", allow_pickle=False)
    hashes = np.load(directory / "hashes.npy", allow_pickle=False)
    return StoredRows(ids, hashes, directory, np.arange(len(ids)), entry.thumbnails)


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


def _hash_posters(items) -> tuple[list[str | None], dict[str, dict]]:
    """SHA-1 of each poster file, checked first to be a regular image file under the size cap
    (a FIFO, a device or a huge sparse file is refused unread); failures are listed, not raised."""
    hashes: list[str | None] = []
    missing: dict[str, dict] = {}
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
            missing[it.id] = {"id": it.id, "path": str(path), "reason": _reason(e, path)}
        except OSError as e:
            hashes.append(None)
            missing[it.id] = {"id": it.id, "path": str(path), "reason": f"cannot read: {e}"}
    return hashes, missing


def _check_weights(registry, image_encoders, text_encoders, factory) -> None:
    """Encoders named for this run whose weights are not on this machine are created now, before
    any folder or file is written: offline that fails at once with where it looked (the hub is
    not tried); with the hub allowed it downloads them, or fails here, not half-way."""
    for param, names in (("image_encoders", image_encoders), ("text_encoders", text_encoders)):
        for name in names or ():
            try:
                if not registry.encoder_spec(name).available:
                    factory(name)
            except EmbedgenreError as e:
                e.param = e.param or param
                raise


def _reason(e: PosterError, path: Path) -> str:
    """The part of a PosterError after ``poster PATH:``, as skipped.json lists reasons."""
    return _reason_text(str(e), path)


def _reason_text(text: str, path: str | Path) -> str:
    """``text`` without a leading ``poster PATH:`` (the skip list names the path beside it)."""
    prefix = f"poster {path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


# ---------------------------------------------------------------------------- writing


def _save_chunk(writer: IndexWriter, key: str, part: Part) -> ChunkRows:
    return save_chunk(writer.partial_dir(key), part.ids, part.hashes, part.vectors, part.thumbs)


def _thumb_maker(items, order: dict[str, int]):
    """make_thumb(item id) for rows stored without a thumbnail (sets written before they were
    kept): made from the poster file, None when it cannot be read."""

    def make(item_id: str) -> bytes | None:
        try:
            return thumbnail_jpeg(load_image(items[order[item_id]].poster))
        except (PosterError, OSError, TypeError):
            return None

    return make


def _check_precision(encoder, name: str, posters: Sequence[str], precision: str, device: str):
    """Refuse a reduced precision that moves the catalog's own posters' embeddings more than the
    fp32 guard allows (the encoder passed it on probe images when it was built)."""
    from embedgenre import encoders as registry
    from embedgenre.encoders.devices import check_on_posters

    reference = registry.create_encoder(name, device=device)
    worst = check_on_posters(encoder, reference, posters, f"precision '{precision}' on {name}")
    if worst is not None:
        logger.info(
            "precision %s on %s: min cosine to fp32 %.5f on posters", precision, name, worst
        )


def _check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in VECTOR_DTYPES:
        raise IndexStoreError(
            f"unknown vector dtype '{dtype}': expected one of {', '.join(VECTOR_DTYPES)}"
        )


def _consolidate(
    writer: IndexWriter,
    job: _Job,
    items,
    gen,
    encoder,
    modality,
    key,
    faiss_kind,
    index_memory,
    dtype="float32",
    device="cpu",
):
    """Write the set in item order, its vectors as ``dtype``, to a new generation folder and
    return its entry; the old entry when nothing changed; None when the set has no rows and
    never had any."""
    old = job.old_entry
    if not job.parts and old is None:
        return None
    if (
        encoder is None
        and old is not None
        and not job.resumed
        and job.reused == old.count
        and (old.thumbnails or modality != "poster")
        and old.dtype == dtype
    ):
        return old  # nothing changed: keep the committed folder as it is
    writer.writable(f"embedding set {key} changed")
    order = {it.id: i for i, it in enumerate(items)}
    info = (
        EncoderInfo.of(encoder.describe())
        if encoder is not None
        else (job.partial_encoder if job.resumed else None) or old.encoder
    )
    rel = f"embeddings/{key}-{gen}"
    d = writer.new_dir(rel)
    count = write_set_files(
        d, job.parts, order, info.dim, dtype, modality == "poster", _thumb_maker(items, order)
    )
    faiss_meta = {"kind": "flat"}
    if count:  # the index is built from the file: large sets are read shard by shard
        stored = np.load(d / "vectors.npy", mmap_mode="r", allow_pickle=False)
        faiss_meta = ivfpq.write_set_index(stored, d, faiss_kind, index_memory, device=device)
    _keep_fit(writer, job, encoder, d)
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


def _keep_fit(writer: IndexWriter, job: _Job, encoder, directory: Path) -> None:
    """Store the fit of a catalog-fitted encoder beside the set's vectors (queries need it)."""
    if encoder is not None:
        if isinstance(encoder, CatalogFittedEncoder):
            encoder.save_state(directory)
        return
    source = _state_source(writer, job)
    if source is not None:
        fitted_class(job.encoder_name).copy_state(source, directory)


def _write_items(path: Path, items, poster_hash, plot_hash) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": [it.id for it in items],
            "title": [it.title for it in items],
            "year": pa.array([it.year for it in items], type=pa.int32()),
            "genres": pa.array([list(it.genres) for it in items], type=pa.list_(pa.string())),
            "plot": [it.plot for it in items],
            "poster": [str(it.poster) if it.poster else None for it in items],
            "poster_sha1": poster_hash,
            "plot_sha1": plot_hash,
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic.write_bytes(path, buf.getvalue())
