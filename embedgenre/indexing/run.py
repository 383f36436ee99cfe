"""One index run, step by step: :class:`IndexRun` plans each embedding set, encodes what it
lacks, writes it, and commits the run; :func:`build_index` is the front door."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from embedgenre import vocabulary
from embedgenre.encoders.base import CatalogFittedEncoder, Encoder
from embedgenre.engines import Engine, LocalEngine, Skip
from embedgenre.errors import IndexStoreError, PosterError
from embedgenre.indexing.encode import (
    check_compatible,
    check_precision,
    encode_task,
    prepare_fitted,
    remember_encoder,
)
from embedgenre.indexing.options import DEFAULT_CHUNK, IndexOptions, IndexSummary, SetSummary
from embedgenre.indexing.plan import (
    Contents,
    SetPlan,
    choose_encoders,
    open_existing,
    preprocessing_changed,
    read_chunks,
    read_partial_encoder,
    read_set,
    reason_text,
)
from embedgenre.indexing.write import next_manifest, read_skipped, write_run_files, write_set
from embedgenre.store.reader import GenreIndex, set_key
from embedgenre.store.rows import save_chunk
from embedgenre.store.schema import SetEntry
from embedgenre.store.writer import IndexWriter

if TYPE_CHECKING:
    from embedgenre.catalog import Catalog

logger = logging.getLogger(__name__)


class IndexRun:
    """Build or update the index at ``out`` from ``catalog`` as ``options`` ask.

    :meth:`run` holds the writer lock and, for each (modality, encoder) pair the index gets,
    calls :meth:`plan` (rows kept, resumed, to encode), :meth:`encode` (chunks saved in
    ``.partial/`` as they come) and :meth:`write` (the set in a new generation folder), then
    :meth:`commit` (one manifest publishes the run). A killed run resumes from its chunks.
    """

    def __init__(self, catalog: Catalog, out: str | Path, options: IndexOptions) -> None:
        self.catalog = catalog
        self.out = Path(out)
        self.options = options
        # set while the run holds the index (see run):
        self.writer: IndexWriter
        self.old: GenreIndex | None = None  # the committed generation, if readable
        self.contents: Contents
        self.wanted: list[tuple[str, str]] = []  # (modality, encoder name)
        self.genres: vocabulary.VocabularyChange  # the vocabulary the run commits
        self.skips: dict[str, Skip] = {}  # posters not indexed this run, by item id
        self.old_skips: dict[tuple[str, str | None], Skip] = {}  # the committed skip list

    def run(self) -> IndexSummary:
        t0 = time.perf_counter()
        self.options.check_weights()
        if not self.catalog.items:
            raise IndexStoreError(f"catalog {self.catalog.root} has no items; nothing to index.")
        with IndexWriter(
            self.out,
            wait=self.options.wait,
            new=True,
            command="embedgenre index",
            allow_read_only=True,
        ) as writer:
            self._start(writer)
            if writer.current is None:  # a new index opens from its first commit on
                self.commit([], complete=False)
            sets, summaries = [], []
            for modality, name in self.wanted:
                entry, summary = self.index_set(modality, name)
                if entry is not None:
                    sets.append(entry)
                    summaries.append(summary)
            written = self.commit(sets)
        return self._summary(summaries, written, t0)

    def index_set(self, modality: str, name: str) -> tuple[SetEntry | None, SetSummary]:
        """Plan, encode and write one embedding set. Its encoder is let go on return, so two
        models are never held at once."""
        summary = SetSummary(key=set_key(modality, name), modality=modality, encoder=name, dim=0)
        plan = self.plan(modality, name)
        t_set = time.perf_counter()
        encoder = self.encode(plan, summary)
        entry = self.write(plan, encoder)
        if entry is not None:
            summary.dim, summary.count = entry.encoder.dim, entry.count
            summary.reused, summary.resumed = plan.reused, plan.resumed
            summary.faiss = dict(entry.faiss)
            summary.skipped = len(self.skips) if modality == "poster" else 0
            summary.seconds = round(time.perf_counter() - t_set, 3)
        return entry, summary

    def _start(self, writer: IndexWriter) -> None:
        """Read what the index and the catalog hold now and choose the encoders."""
        self.writer = writer
        self.old = open_existing(writer)
        self.contents = Contents.of(self.catalog)
        unreadable = self.contents.unreadable
        if self.options.strict and unreadable:
            rec = next(iter(unreadable.values()))
            raise PosterError(
                f"{rec.path}: {rec.reason} ({len(unreadable)} poster(s) unreadable, and strict "
                "mode makes any unreadable poster fatal).",
                "Fix: repair them, or turn strict mode off to skip and list them.",
                param="strict",
            )
        self.wanted = choose_encoders(writer.current, self.out, self.options, self.contents.n_plots)
        stored = [Skip.of(s) for s in (self.old.skipped if self.old else [])]
        self.old_skips = {(s.id, s.hash): s for s in stored}
        self.skips = dict(unreadable)
        self.genres = vocabulary.extend(
            writer.current.genres if writer.current else None,
            self.catalog.genre_counts(),
            self.catalog.genres,
            drop_unused=self.options.drop_unused_genres,
        )

    def plan(self, modality: str, name: str) -> SetPlan:
        """What the set (modality, encoder ``name``) needs this run. Stored rows are kept only
        while the encoder prepares images as it did when they were encoded."""
        plan = self._sort_rows(modality, name, keep_committed=True)
        if plan.reused and preprocessing_changed(plan.old_entry, name):
            logger.warning(
                "%s: %s now prepares images differently from when this index was built; "
                "re-encoding its %d stored posters",
                plan.key,
                name,
                plan.reused,
            )
            plan = self._sort_rows(modality, name, keep_committed=False)
        return plan

    def _sort_rows(self, modality: str, name: str, *, keep_committed: bool) -> SetPlan:
        """Each item with content goes to one of: kept (the committed set has its hash),
        resumed (a ``.partial/`` chunk has it), skipped (its poster failed before with these
        bytes) or to encode."""
        key = set_key(modality, name)
        plan = SetPlan(modality, name, key)
        hashes = self.contents.hashes(modality)
        unreadable = self.skips if modality == "poster" else {}
        items = self.contents.items
        current = {
            it.id: h for it, h in zip(items, hashes) if h is not None and it.id not in unreadable
        }
        done: set[str] = set()
        if self.old is not None and keep_committed:
            plan.old_entry = self.old.manifest.set_by_key(key)
            if plan.old_entry is not None:
                stored = read_set(self.writer.path / plan.old_entry.dir, plan.old_entry)
                plan.reused = plan.keep(stored, current, done)
        partial = self.writer.partial_dir(key)
        plan.partial_encoder = read_partial_encoder(partial)
        for chunk in read_chunks(partial, plan.partial_encoder):
            plan.resumed += plan.keep(chunk, current, done)
        for pos, (it, h) in enumerate(zip(items, hashes)):
            if h is None or it.id in done:
                continue
            if modality == "poster" and (it.id, h) in self.old_skips:
                self.skips[it.id] = self.old_skips[(it.id, h)]  # same bytes failed: no retry
                continue
            plan.todo.append(pos)
        return plan

    def encode(self, plan: SetPlan, summary: SetSummary) -> Encoder | None:
        """Encode the items ``plan`` lacks with the engine, saving each chunk in ``.partial/``
        as it comes and adding it to the plan's parts; unreadable posters become skips. Returns
        the encoder, or None when nothing needed one (so no model was loaded)."""
        if not plan.todo:
            return None
        writer, options = self.writer, self.options
        writer.writable(f"{len(plan.todo)} {plan.modality}(s) to encode for {plan.key}")
        encoder = options.make_encoder(plan.encoder_name)
        if isinstance(encoder, CatalogFittedEncoder):
            prepare_fitted(encoder, writer, plan, self.contents)
        check_compatible(plan.old_entry, encoder, self.out)
        remember_encoder(writer, plan, encoder)
        logger.info(
            "%s: encoding %d %ss with %s (%d reused, %d resumed)",
            plan.key,
            len(plan.todo),
            plan.modality,
            plan.encoder_name,
            plan.reused,
            plan.resumed,
        )
        task = encode_task(plan, self.contents, options, writer.partial_dir(plan.key))
        if plan.modality == "poster" and options.precision != "fp32":
            check_precision(encoder, plan.encoder_name, task.sources, options)
        failed = 0
        for chunk, bad in options.engine.encode(task, encoder):
            for skip in bad:
                if options.strict:
                    raise PosterError(
                        f"{skip.path}: {skip.reason} (strict mode makes any "
                        "unreadable poster fatal).",
                        "Fix: repair it, or turn strict mode off to skip and list it.",
                        param="strict",
                    )
                self.skips[skip.id] = replace(skip, reason=reason_text(skip.reason, skip.path))
                failed += 1
            if len(chunk.ids):  # on disk first; the run keeps only its ids
                plan.parts.append(
                    save_chunk(
                        writer.partial_dir(plan.key),
                        chunk.ids,
                        chunk.hashes,
                        chunk.vectors,
                        chunk.thumbs,
                    )
                )
            summary.encoded += len(chunk.ids)
        if failed:
            logger.info(
                "%s: %d of the %d posters could not be read and were skipped",
                plan.key,
                failed,
                len(plan.todo),
            )
        return encoder

    def write(self, plan: SetPlan, encoder: Encoder | None) -> SetEntry | None:
        """The set's entry for the next manifest: written anew when anything changed (vectors
        as the asked dtype, else as the set had them), else the committed one; None when the
        catalog has nothing for it."""
        old = plan.old_entry
        dtype = self.options.vector_dtype or (old.dtype if old else "float32")
        entry = write_set(
            self.writer,
            plan,
            self.contents,
            encoder,
            dtype=dtype,
            faiss_kind=self.options.faiss_kind,
            memory=self.options.memory,
            device=self.options.device,
        )
        if entry is None:  # e.g. a catalog without plots: no set to write
            logger.info(
                "%s: no %ss in the catalog; no embedding set written", plan.key, plan.modality
            )
        elif encoder is None and entry is old:
            logger.info("%s: up to date (%d rows)", plan.key, entry.count)
        return entry

    def commit(self, sets: list[SetEntry], *, complete: bool = True) -> bool:
        """Publish ``sets`` with the catalog's items and the skip list as the next generation;
        a complete commit then clears ``.partial/``. Returns False when the index already held
        exactly this (nothing written)."""
        writer = self.writer
        skips = [s.to_dict() for s in sorted(self.skips.values(), key=lambda s: s.id)]
        manifest = next_manifest(
            writer.current,
            writer.generation,
            self.contents,
            self.wanted,
            sets,
            vocabulary=self.genres.vocabulary,
            skips=skips,
            old_skips=read_skipped(writer) if writer.current else None,
            fresh_items=complete and self.old is None,
        )
        if manifest is None:
            logger.info("%s is up to date; nothing written", self.out)
        else:
            write_run_files(writer, manifest, self.contents, skips)
            writer.commit(manifest if complete else manifest.evolve(complete=False))
        if complete:
            for _, name in self.wanted:
                for modality in ("poster", "plot"):
                    writer.clear_partial(set_key(modality, name))
        return manifest is not None

    def _summary(self, sets: list[SetSummary], written: bool, t0: float) -> IndexSummary:
        c = self.contents
        return IndexSummary(
            path=str(self.out),
            items=len(c.items),
            with_plot=c.n_plots,
            with_poster=sum(
                h is not None and it.id not in self.skips for it, h in zip(c.items, c.poster_hash)
            ),
            genres=dict(self.genres.vocabulary.counts),
            sets=sets,
            skipped=sorted(self.skips.values(), key=lambda s: s.id),
            seconds=round(time.perf_counter() - t0, 3),
            problems=list(getattr(self.catalog, "problems", [])),
            up_to_date=not written,
            new_genres=self.genres.added if self.old is not None else [],
            retired_genres=self.genres.retired,
            dropped_genres=self.genres.dropped,
        )


def build_index(
    catalog: Catalog,
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
    encoder_factory: Callable[[str], Encoder] | None = None,
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
    (:func:`embedgenre.ann.write_set_index`); the choice is recorded in the manifest. ``vector_dtype``: how
    each set's vectors are stored, "float32" or "float16" (half the disk and page cache; recall
    of exact search 0.9996 against float32 at 1M); None keeps what each set has (float32 for a
    new one). A set whose dtype changes is rewritten from its stored rows, without encoding.
    The index keeps its genre vocabulary (:func:`embedgenre.vocabulary.extend`): known genres
    keep their position so saved heads keep working, new ones are appended, and a genre no
    item carries any more stays (count 0) unless ``drop_unused_genres``.
    An unchanged catalog writes nothing; a run killed at any point resumes from its chunks.
    The options are checked (:class:`IndexOptions`) before the index is touched.
    """
    options = IndexOptions(
        image_encoders=image_encoders,
        text_encoders=text_encoders,
        add=add,
        device=device,
        backend=backend,
        precision=precision,
        batch_size=batch_size,
        chunk_size=chunk_size,
        strict=strict,
        progress=progress,
        encoder_factory=encoder_factory,
        wait=wait,
        engine=engine or LocalEngine(),
        faiss_kind=faiss_kind,
        index_memory=index_memory,
        vector_dtype=vector_dtype,
        drop_unused_genres=drop_unused_genres,
    )
    return IndexRun(catalog, out, options).run()
