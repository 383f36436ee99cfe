"""Build or update an index directory from a catalog: hash, encode what changed, commit.

The pipeline is reader -> encoder -> writer, one embedding set (modality x encoder) at a time:

1. every item's content is hashed (poster bytes, plot text);
2. items whose (id, hash) is already in the set, or in the ``.partial/`` chunks an interrupted run
   left behind, are reused; the rest are encoded in chunks, each chunk saved atomically as soon as
   it is done (a killed run loses at most one chunk);
3. the set is consolidated in item order, its FAISS index built, and the manifest replaced.

An encoder is only loaded when something needs encoding, so re-running on an unchanged catalog is
cheap. Posters that cannot be read are skipped, listed in ``skipped.json`` and in the summary, and
not retried while their bytes stay the same (``strict=True`` makes the first one fatal).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embedgenre import __version__, ann
from embedgenre.errors import IndexStoreError, PosterError
from embedgenre.store import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    GenreIndex,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_json,
    now_iso,
    remove_unreferenced,
    set_key,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 256
# Plots are padded to the longest text of a batch: on CPU, MiniLM through ONNX Runtime ran at
# ~75 plots/s with batches of 8-16 and ~47 with 64 (benchmarks/encode_speed.py).
TEXT_BATCH = 16


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
    skipped: int = 0  # posters that could not be read
    seconds: float = 0.0
    faiss: dict = field(default_factory=dict)


@dataclass
class IndexSummary:
    path: str
    items: int
    with_plot: int
    with_poster: int
    genres: dict[str, int]
    sets: list[SetSummary]
    skipped: list[dict]
    seconds: float
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Job:
    """What one embedding set needs: the items to encode and what can be kept."""

    modality: str
    encoder_name: str
    key: str
    todo: list[int]  # item positions to encode
    keep_vectors: list[np.ndarray]
    keep_ids: list[np.ndarray]
    keep_hashes: list[np.ndarray]
    reused: int = 0
    resumed: int = 0
    old_entry: dict | None = None


def sha1_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


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
    batch_size: int = 32,
    chunk_size: int = DEFAULT_CHUNK,
    strict: bool = False,
    progress: bool = False,
    encoder_factory: Callable | None = None,
) -> IndexSummary:
    """Encode ``catalog`` (a :class:`~embedgenre.catalog.Catalog`) into the index at ``out``.

    ``image_encoders`` / ``text_encoders``: registry names. None means the encoders the existing
    index already holds, or, for a new index, the best available offline defaults. Asking an
    existing index for encoders it does not hold is refused unless ``add=True``.
    """
    from embedgenre import encoders as registry

    t0 = time.perf_counter()
    out = Path(out)
    factory = encoder_factory or (lambda name: registry.create_encoder(name, device=device))
    old = _open_existing(out)

    items = catalog.items
    if not items:
        raise IndexStoreError(f"catalog {catalog.root} has no items; nothing to index.")
    poster_hash, missing = _hash_posters(items)
    if strict and missing:
        rec = next(iter(missing.values()))
        raise PosterError(
            f"{rec['path']}: {rec['reason']} ({len(missing)} poster(s) missing; --strict makes "
            "any unreadable poster fatal: fix the paths, or drop --strict to skip and list them)"
        )
    plot_hash = [sha1_text(it.plot_text) if it.plot_text else None for it in items]

    n_plots = sum(h is not None for h in plot_hash)
    wanted = _choose_encoders(old, image_encoders, text_encoders, add, registry, n_plots)
    out.mkdir(parents=True, exist_ok=True)
    old_skipped = {(s["id"], s.get("hash")): s for s in (old.skipped if old else [])}

    # Commit 1: the items (and vocabulary) of this run, next to whatever sets already exist.
    gen = int(old.manifest.get("generation", 0)) + 1 if old else 1
    manifest = _base_manifest(catalog, old, gen)
    items_file = f"items-{gen}.parquet"
    _write_items(out / items_file, items, poster_hash, plot_hash)
    manifest["items_file"] = items_file
    manifest["sets"] = [e for e in (old.manifest["sets"] if old else [])]
    manifest["encoders"] = [{"modality": m, "name": n} for m, n in wanted]
    skipped: dict[str, dict] = {item_id: rec for item_id, rec in missing.items()}
    _commit(out, manifest, skipped)

    summaries = []
    for modality, name in wanted:
        hashes = poster_hash if modality == "poster" else plot_hash
        key = set_key(modality, name)
        job = _plan(out, old, modality, name, key, items, hashes, skipped, old_skipped)
        if job.reused and _preprocessing_changed(job.old_entry, name, registry):
            logger.warning(
                "%s: %s now prepares images differently from when this index was built; "
                "re-encoding its %d stored posters",
                key,
                name,
                job.reused,
            )
            job = _plan(out, None, modality, name, key, items, hashes, skipped, old_skipped)
            job.old_entry = None
        summary = SetSummary(key=key, modality=modality, encoder=name, dim=0)
        t_set = time.perf_counter()
        encoder = None
        if job.todo:
            encoder = factory(name)
            if getattr(encoder, "fitted_on_catalog", False):
                _prepare_fitted(encoder, out, job, items)
            _check_compatible(job.old_entry, encoder, out)
            logger.info(
                "%s: encoding %d %ss with %s (%d reused, %d resumed)",
                key,
                len(job.todo),
                modality,
                name,
                job.reused,
                job.resumed,
            )
            for ids, hs, vecs, bad in _encode_chunks(
                encoder, modality, items, job.todo, hashes, batch_size, chunk_size, progress
            ):
                for rec in bad:
                    if strict:
                        raise PosterError(
                            f"{rec['path']}: {rec['reason']} (--strict makes any unreadable "
                            "poster fatal; drop --strict to skip and list it instead)"
                        )
                    skipped[rec["id"]] = rec
                    summary.skipped += 1
                _save_chunk(out, key, ids, hs, vecs)
                job.keep_vectors.append(vecs)
                job.keep_ids.append(ids)
                job.keep_hashes.append(hs)
                summary.encoded += len(ids)
        entry = _consolidate(out, job, items, gen, encoder, name, modality, key)
        if entry is None:  # e.g. a catalog without plots: no set to write
            logger.info("%s: no %ss in the catalog; no embedding set written", key, modality)
            continue
        manifest["sets"] = [e for e in manifest["sets"] if e["key"] != key] + [entry]
        manifest.setdefault("defaults", {}).setdefault(modality, key)
        _commit(out, manifest, skipped)
        _clear_partial(out, key)
        summary.dim = entry["encoder"]["dim"]
        summary.count = entry["count"]
        summary.reused, summary.resumed = job.reused, job.resumed
        summary.seconds = round(time.perf_counter() - t_set, 3)
        summary.faiss = entry["faiss"]
        summaries.append(summary)
        if encoder is None:
            logger.info("%s: up to date (%d rows)", key, entry["count"])

    manifest["complete"] = True
    manifest["counts"]["skipped_posters"] = len(skipped)
    _commit(out, manifest, skipped)
    remove_unreferenced(out, manifest)

    return IndexSummary(
        path=str(out),
        items=len(items),
        with_plot=sum(h is not None for h in plot_hash),
        with_poster=sum(
            h is not None and it.id not in skipped for it, h in zip(items, poster_hash)
        ),
        genres=dict(manifest["genre_counts"]),
        sets=summaries,
        skipped=sorted(skipped.values(), key=lambda r: r["id"]),
        seconds=round(time.perf_counter() - t0, 3),
        problems=list(getattr(catalog, "problems", [])),
    )


# ---------------------------------------------------------------------------- planning


def _open_existing(out: Path) -> GenreIndex | None:
    if not (out / MANIFEST).exists():
        if out.exists() and any(p for p in out.iterdir() if p.name != ".partial"):
            raise IndexStoreError(
                f"{out} exists and is not an embedgenre index; choose a new --out directory "
                "or empty this one."
            )
        return None
    return GenreIndex.open(out)


def _choose_encoders(
    old, image_encoders, text_encoders, add, registry, n_plots: int
) -> list[tuple[str, str]]:
    existing = []
    if old is not None:  # the encoders asked for before, whether or not they produced a set
        recorded = old.manifest.get("encoders") or [
            {"modality": e["modality"], "name": e["encoder"]["name"]} for e in old.manifest["sets"]
        ]
        existing = [(e["modality"], e["name"]) for e in recorded]
    asked: list[tuple[str, str]] = []
    asked += [("poster", n) for n in image_encoders or ()]
    asked += [("plot", n) for n in text_encoders or ()]
    if not existing:  # a new index, or one killed before its first set was committed
        if not image_encoders:
            asked.insert(0, ("poster", registry.default_image_encoder_name()))
        if not text_encoders:
            asked.append(("plot", registry.default_text_encoder_name(n_plots)))
        return asked
    new = [a for a in asked if a not in existing]
    if new and not add:
        held = ", ".join(f"{m}:{n}" for m, n in existing)
        names = ", ".join(f"{m}:{n}" for m, n in new)
        raise IndexStoreError(
            f"index {old.path} was built with {held}; you asked for {names}. Pass --add to "
            "encode the same items with it too (one embedding set per encoder), or choose a "
            "new --out directory to build a separate index."
        )
    return existing + new


def _check_compatible(old_entry: dict | None, encoder, out: Path) -> None:
    """Refuse to mix embeddings of a changed encoder into an existing set."""
    if old_entry is None:
        return
    was = old_entry["encoder"]
    now = encoder.describe()
    for field_name in ("dim", "space"):
        if was.get(field_name) != now.get(field_name):
            raise IndexStoreError(
                f"encoder {encoder.name!r} now gives {field_name}={now.get(field_name)!r} but the "
                f"index at {out} was built with {field_name}={was.get(field_name)!r}; its "
                "embeddings cannot be mixed. Build a new index with --out NEW_DIR."
            )


def _preprocessing_changed(entry: dict | None, name: str, registry) -> bool:
    """True when the set's recorded image preprocessing differs from what ``name`` uses now
    (known without loading the model only for some families; unknown counts as unchanged)."""
    if entry is None:
        return False
    now = registry.preprocessing(name)
    was = entry.get("encoder", {}).get("preprocessing")
    if now is None or was is None:
        return False
    return json.loads(json.dumps(now)) != was  # as the manifest stores it: tuples become lists


def _state_source(out: Path, job: _Job) -> Path | None:
    """Where the fit of a catalog-fitted encoder for ``job`` is stored: the interrupted run's
    ``.partial/`` (if it left chunks), else the committed set (if rows are reused)."""
    from embedgenre.encoders.hybrid import HybridEncoder

    partial = out / ".partial" / job.key
    if job.resumed and HybridEncoder.has_state(partial):
        return partial
    if job.old_entry is not None and HybridEncoder.has_state(out / job.old_entry["dir"]):
        return out / job.old_entry["dir"]
    return None


def _prepare_fitted(encoder, out: Path, job: _Job, items) -> None:
    """Give an encoder fitted on the catalog (``hybrid:``) its fit before anything is encoded.

    Rows kept from before were embedded with the stored fit, so it is loaded again and new rows
    share their space; with nothing kept, it is fitted on the catalog's plots. Either way the fit
    is saved in ``.partial/`` first, so a killed run resumes with the same one.
    """
    source = _state_source(out, job) if (job.reused or job.resumed) else None
    if source is not None:
        encoder.load_state(source)
        logger.info("%s: using the lexical fit stored in %s", job.key, source)
    else:
        if job.resumed:  # chunks of a run whose fit is lost cannot be matched: encode again
            raise IndexStoreError(
                f"{out}/.partial/{job.key} holds encoded plots without the fit they were made "
                f"with; delete {out}/.partial and run the same command again"
            )
        encoder.fit([it.plot_text for it in items if it.plot_text])
        job.old_entry = None  # nothing is kept, so a new fit mixes with nothing
    encoder.save_state(out / ".partial" / job.key)


def _plan(out, old, modality, name, key, items, hashes, skipped, old_skipped) -> _Job:
    job = _Job(modality, name, key, [], [], [], [])
    unreadable = skipped if modality == "poster" else {}
    current = {
        it.id: h for it, h in zip(items, hashes) if h is not None and it.id not in unreadable
    }
    done: set[str] = set()
    if old is not None:
        entry = next((e for e in old.manifest["sets"] if e["key"] == key), None)
        job.old_entry = entry
        if entry is not None:
            d = out / entry["dir"]
            ids = np.load(d / "ids.npy")
            hs = np.load(d / "hashes.npy")
            keep = np.array([current.get(str(i)) == str(h) for i, h in zip(ids, hs)], bool)
            if keep.any():
                job.keep_vectors.append(np.load(d / "vectors.npy")[keep])
                job.keep_ids.append(ids[keep])
                job.keep_hashes.append(hs[keep])
                done.update(str(i) for i in ids[keep])
                job.reused = int(keep.sum())
    for chunk in sorted((out / ".partial" / key).glob("chunk-*.npz")):
        try:
            with np.load(chunk, allow_pickle=False) as z:
                ids, hs, vecs = z["ids"], z["hashes"], z["vectors"]
        except Exception as e:  # a chunk is written atomically; still, never trust it blindly
            logger.warning("ignoring unreadable partial chunk %s (%s)", chunk, e)
            continue
        keep = np.array(
            [current.get(str(i)) == str(h) and str(i) not in done for i, h in zip(ids, hs)], bool
        )
        if keep.any():
            job.keep_vectors.append(vecs[keep])
            job.keep_ids.append(ids[keep])
            job.keep_hashes.append(hs[keep])
            done.update(str(i) for i in ids[keep])
            job.resumed += int(keep.sum())
    for pos, (it, h) in enumerate(zip(items, hashes)):
        if h is None or it.id in done:
            continue
        if modality == "poster" and (it.id, h) in old_skipped:
            skipped[it.id] = old_skipped[(it.id, h)]  # same bytes failed before; don't retry
            continue
        job.todo.append(pos)
    return job


def _hash_posters(items) -> tuple[list[str | None], dict[str, dict]]:
    hashes: list[str | None] = []
    missing: dict[str, dict] = {}
    for it in items:
        path = Path(it.poster) if it.poster else None
        if path is None:
            hashes.append(None)
            continue
        try:
            hashes.append(sha1_file(path))
        except FileNotFoundError:
            hashes.append(None)
            missing[it.id] = {"id": it.id, "path": str(path), "reason": "file not found"}
        except OSError as e:
            hashes.append(None)
            missing[it.id] = {"id": it.id, "path": str(path), "reason": f"cannot read: {e}"}
    return hashes, missing


# ---------------------------------------------------------------------------- encoding


def _encode_chunks(
    encoder, modality, items, todo, hashes, batch_size, chunk_size, progress
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]]:
    """Yield (ids, hashes, vectors, unreadable posters) for consecutive chunks of ``todo``."""
    bar = _progress(len(todo), f"{modality}s", progress)
    batches = (
        _plot_batches(encoder, items, todo, min(batch_size, TEXT_BATCH))
        if modality == "plot"
        else _poster_batches(encoder, items, todo, hashes, batch_size)
    )
    vecs: list[np.ndarray] = []
    ok: list[int] = []
    bad: list[dict] = []
    for batch_vecs, batch_ok, batch_bad in batches:
        vecs.append(batch_vecs)
        ok.extend(batch_ok)
        bad.extend(batch_bad)
        bar(len(batch_ok) + len(batch_bad))
        if len(ok) >= chunk_size:
            yield _chunk(items, hashes, ok, vecs, bad)
            vecs, ok, bad = [], [], []
    if ok or bad:
        yield _chunk(items, hashes, ok, vecs, bad)
    bar(None)


def _chunk(items, hashes, ok, vecs, bad):
    ids = np.array([items[p].id for p in ok], dtype=str)
    hs = np.array([hashes[p] for p in ok], dtype=str)
    dim = vecs[0].shape[1] if vecs else 0
    v = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
    return ids, hs, np.ascontiguousarray(v, dtype=np.float32), bad


def _plot_batches(encoder, items, todo, batch_size):
    """(vectors, item positions, []) per group of plots, longest plots first: a batch pads its
    texts to the longest one, so batches of near-equal lengths waste little (8-17% more plots/s
    than groups in catalog order in our runs; benchmarks/encode_speed.py measures it)."""
    todo = sorted(todo, key=lambda p: -len(items[p].plot_text))
    group = batch_size * 8
    for start in range(0, len(todo), group):
        positions = todo[start : start + group]
        texts = [items[p].plot_text for p in positions]
        yield encoder.encode_texts(texts, batch_size=batch_size), positions, []


def _poster_batches(encoder, items, todo, hashes, batch_size):
    """(vectors, item positions, unreadable posters) per batch, decoding in worker threads
    across the whole run, so the model never waits at a checkpoint."""
    from embedgenre.encoders import iter_image_batches

    transform = getattr(encoder, "transform", None)
    draft = transform.draft_size if transform is not None else None
    paths = [items[p].poster for p in todo]
    batches = iter_image_batches(paths, encoder.preprocess, batch_size, draft_size=draft)
    for batch, rows, failures in batches:
        vecs = encoder.encode_pixels(batch) if len(rows) else np.zeros((0, encoder.dim), np.float32)
        bad = [
            {
                "id": items[todo[i]].id,
                "path": str(items[todo[i]].poster),
                "reason": str(err),
                "hash": hashes[todo[i]],
            }
            for i, err in failures
        ]
        yield vecs, [todo[i] for i in rows], bad


def _progress(total: int, unit: str, enabled: bool):
    """A tiny progress callback: ``bar(n)`` advances, ``bar(None)`` closes."""
    if not enabled or total == 0:
        return lambda n: None
    from rich.console import Console
    from rich.progress import Progress

    prog = Progress(console=Console(stderr=True), transient=True)
    task = prog.add_task(f"encoding {unit}", total=total)
    prog.start()

    def bar(n):
        if n is None:
            prog.stop()
        else:
            prog.advance(task, n)

    return bar


# ---------------------------------------------------------------------------- writing


def _save_chunk(out: Path, key: str, ids, hashes, vectors) -> None:
    d = out / ".partial" / key
    d.mkdir(parents=True, exist_ok=True)
    n = len(list(d.glob("chunk-*.npz")))
    import io

    buf = io.BytesIO()
    np.savez(buf, ids=ids, hashes=hashes, vectors=vectors)
    atomic_write_bytes(d / f"chunk-{n:06d}.npz", buf.getvalue())


def _clear_partial(out: Path, key: str) -> None:
    import shutil

    shutil.rmtree(out / ".partial" / key, ignore_errors=True)
    try:
        (out / ".partial").rmdir()
    except OSError:
        pass


def _consolidate(out, job: _Job, items, gen, encoder, name, modality, key) -> dict | None:
    """Write the set in item order to a new generation directory; return its manifest entry."""
    order = {it.id: i for i, it in enumerate(items)}
    if job.keep_vectors:
        vecs = np.concatenate(job.keep_vectors)
        ids = np.concatenate(job.keep_ids)
        hs = np.concatenate(job.keep_hashes)
    elif job.old_entry is None:
        return None
    else:
        dim = job.old_entry["encoder"]["dim"]
        vecs, ids, hs = np.zeros((0, dim), np.float32), np.array([], str), np.array([], str)
    perm = np.argsort([order[str(i)] for i in ids], kind="stable")
    vecs, ids, hs = np.ascontiguousarray(vecs[perm], np.float32), ids[perm], hs[perm]

    if (
        encoder is None
        and job.old_entry is not None
        and job.reused == len(ids)
        and (len(ids) == job.old_entry["count"])
    ):
        return job.old_entry  # nothing changed: keep the committed directory as it is

    rel = f"embeddings/{key}-{gen}"
    d = out / rel
    d.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(d / "vectors.npy", vecs)
    atomic_save_npy(d / "ids.npy", ids.astype(str))
    atomic_save_npy(d / "hashes.npy", hs.astype(str))
    if len(ids):
        index, faiss_info = ann.build_faiss_index(vecs)
        tmp = d / ".faiss.index.tmp"
        ann.save_faiss_index(index, tmp)
        tmp.replace(d / "faiss.index")
    else:
        faiss_info = "flat"
    faiss_meta = faiss_info if isinstance(faiss_info, dict) else {"kind": faiss_info}
    _keep_fit(out, job, encoder, d)
    describe = encoder.describe() if encoder is not None else job.old_entry["encoder"]
    return {
        "key": key,
        "modality": modality,
        "dir": rel,
        "encoder": describe,
        "count": int(len(ids)),
        "faiss": faiss_meta,
        "updated": now_iso(),
    }


def _keep_fit(out: Path, job: _Job, encoder, directory: Path) -> None:
    """Store the fit of a catalog-fitted encoder beside the set's vectors (queries need it)."""
    import shutil

    if encoder is not None:
        if getattr(encoder, "fitted_on_catalog", False):
            encoder.save_state(directory)
        return
    source = _state_source(out, job)
    if source is not None:
        from embedgenre.encoders.hybrid import STATE_DIR

        shutil.copytree(source / STATE_DIR, directory / STATE_DIR, dirs_exist_ok=True)


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
    atomic_write_bytes(path, buf.getvalue())


def _base_manifest(catalog, old: GenreIndex | None, gen: int) -> dict:
    counts = catalog.genre_counts()
    created = old.manifest.get("created") if old else now_iso()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": gen,
        "complete": False,
        "created": created,
        "updated": now_iso(),
        "embedgenre_version": __version__,
        "catalog": {"path": str(Path(catalog.root).resolve())},
        "genres": list(catalog.genres),
        "genre_counts": {g: int(counts.get(g, 0)) for g in catalog.genres},
        "counts": {
            "items": len(catalog.items),
            "with_plot": sum(1 for it in catalog.items if it.plot),
            "with_poster": sum(1 for it in catalog.items if it.poster),
        },
        "defaults": dict(old.manifest.get("defaults", {})) if old else {},
        "sets": [],
    }


def _commit(out: Path, manifest: dict, skipped: dict[str, dict]) -> None:
    """Write skipped.json, then the manifest: the manifest rename is the commit point."""
    manifest["updated"] = now_iso()
    recs = sorted(skipped.values(), key=lambda r: r["id"])
    atomic_write_bytes(out / "skipped.json", (json.dumps(recs, indent=1) + "\n").encode())
    atomic_write_json(out / MANIFEST, manifest)
