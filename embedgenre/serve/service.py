"""What the service answers from: one index generation with its predictors and retriever, the
encoders shared between generations, and the switch to a new generation while serving.

A request takes :attr:`Service.current` once and uses that :class:`Generation` to the end, so a
switch never changes the index under a running request: readers of the old generation keep
their memory maps while the new one is opened beside it. The index is only ever read.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from embedgenre.encoders import load_set_encoder
from embedgenre.encoders.base import CatalogFittedEncoder
from embedgenre.errors import EmbedgenreError
from embedgenre.heads import HeadCache
from embedgenre.predict import Predictor
from embedgenre.retrieval import Retriever
from embedgenre.serve.batching import BatchedEncoder, MicroBatcher
from embedgenre.serve.config import ServeConfig
from embedgenre.serve.limits import DecodeBudget
from embedgenre.serve.metrics import Metrics
from embedgenre.store import GenreIndex
from embedgenre.store.schema import MANIFEST

logger = logging.getLogger(__name__)


def one_blas_thread_per_request() -> None:
    """Run BLAS (numpy's and faiss's OpenBLAS) on one thread per call in this process.

    A service's parallelism is its concurrent requests, each search one small matrix product
    in a worker thread; several multi-threaded BLAS calls at once oversubscribe the cores
    (benchmarks/serve_load.py, similar by id at 8 clients on 2 cores: 73 requests/s with BLAS
    threads, over 450 with one each). The encoders keep their own thread pools."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class EncoderPool:
    """Query encoders of embedding sets, each loaded once and put behind micro-batches.

    An encoder fitted on the catalog (its state stored in the set's folder) is keyed by that
    folder too, so a generation that refits it gets its own; others are shared by name.
    """

    def __init__(self, config: ServeConfig, metrics: Metrics):
        self.config, self.metrics = config, metrics
        self._by_key: dict[tuple[str, str], BatchedEncoder] = {}
        self._lock = threading.Lock()

    def _batcher(self, fn, kind: str) -> MicroBatcher:
        m = self.metrics

        def on_batch(size: int, seconds: float) -> None:
            m.batch.labels(kind).observe(size)
            m.stage.labels("encode").observe(seconds)

        return MicroBatcher(
            fn,
            kind,
            max_batch=self.config.max_batch,
            max_wait=self.config.max_wait_ms / 1000,
            max_queue=self.config.max_queue,
            on_batch=on_batch,
            on_queue=lambda depth: m.queue.labels(kind).set(depth),
            on_drop=lambda n: m.dropped.labels(kind).inc(n),
        )

    def __call__(self, emb, device: str = "cpu") -> BatchedEncoder:
        with self._lock:
            for key in self._keys(emb):
                if key in self._by_key:
                    return self._by_key[key]
            same = next((e for (name, _), e in self._by_key.items() if name == emb.encoder), None)
            if same is not None and isinstance(same.encoder, CatalogFittedEncoder):
                # the model is shared; only the fit stored with this set is read
                encoder = copy.copy(same.encoder).load_state(emb.directory)
            else:
                encoder = load_set_encoder(emb, device=device)
            fitted = isinstance(encoder, CatalogFittedEncoder)
            key = (emb.encoder, str(emb.directory) if fitted else "")
            self._by_key[key] = BatchedEncoder(encoder, self._batcher)
            return self._by_key[key]

    @staticmethod
    def _keys(emb) -> tuple[tuple[str, str], ...]:
        return ((emb.encoder, ""), (emb.encoder, str(emb.directory)))

    def retain(self, sets) -> None:
        """Close the encoders that none of these embedding sets use (older generations')."""
        keep = {k for emb in sets for k in self._keys(emb)}
        with self._lock:
            for key in [k for k in self._by_key if k not in keep]:
                self._by_key.pop(key).close()

    def close(self) -> None:
        with self._lock:
            for enc in self._by_key.values():
                enc.close()
            self._by_key.clear()


@dataclass
class Generation:
    """One committed generation of the index and what answers from it."""

    index: GenreIndex
    retriever: Retriever
    default_head: str | None
    loader: EncoderPool
    heads: HeadCache
    predictors: dict[str | None, Predictor] = field(default_factory=dict)
    opened: float = field(default_factory=time.time)

    @property
    def number(self) -> int:
        return self.index.generation

    @cached_property
    def with_thumbnail(self) -> frozenset[str]:
        """Ids of the items that have a stored thumbnail (answers link only to those)."""
        ids = set()
        for s in self.index.sets:
            if s.modality == "poster" and s.thumbs is not None:
                ids.update(str(i) for i, n in zip(s.ids, s.thumbs[1][:, 1]) if n > 0)
        return frozenset(ids)

    def predictor(self, head: str | None = None) -> Predictor:
        name = head or self.default_head
        if name in self.predictors:
            return self.predictors[name]
        predictor = Predictor(self.index, head=name, encoder_loader=self.loader, heads=self.heads)
        if name is None or name in {h.name for h in self.index.manifest.heads}:
            self.predictors[name] = predictor  # never a cache entry per unknown name asked for
        return predictor


def _manifest_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path / MANIFEST)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Service:
    """Loads the index (and its models) once, serves it, and follows new generations."""

    def __init__(self, config: ServeConfig, metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.encoders = EncoderPool(config, self.metrics)
        self.heads = HeadCache()  # shared by generations: a switch reads or fits no head again
        self.decode_budget = DecodeBudget(
            config.decode_memory_bytes, on_change=self.metrics.decode_bytes.set
        )
        self.current: Generation | None = None
        self.load_error: str | None = None
        self.started = time.time()
        self.ready_seconds: float | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- loading -----------------------------------------------------------------------

    def open_generation(self) -> Generation:
        """Open the index's current generation and warm what its queries need."""
        index = GenreIndex.open(self.config.index_dir)
        gen = Generation(
            index,
            Retriever(index, encoder_loader=self.encoders, thumbnails=False),
            self.config.head,
            self.encoders,
            self.heads,
        )
        self._warm(gen)
        return gen

    def _warm(self, gen: Generation) -> None:
        """Load the default heads' encoders, the retriever's statistics and search indexes now,
        so no request pays for them (a kind of input no head can score is left to fail per
        request with its message, unless --head names a head that must exist)."""
        modalities = {s.modality for s in gen.index.sets}
        errors, fits = [], 0
        for has_poster, has_plot in ((True, False), (False, True)):
            if ("poster" if has_poster else "plot") not in modalities:
                continue
            try:
                gen.predictor().query_encoders(has_poster, has_plot)
                fits += 1
            except EmbedgenreError as e:
                errors.append(e)
                logger.info("predict with %s: %s", "posters" if has_poster else "a plot", e)
        if self.config.head and not fits and errors:
            raise errors[0]  # --head names a head that cannot answer anything
        gen.retriever.warm()
        _ = gen.with_thumbnail
        for s in gen.index.sets:
            if s.modality == "plot" or "text" in s.describe.get("modalities", []):
                self.encoders(s)

    def start(self) -> None:
        """Load the first generation (raises what prevents serving), then follow new ones."""
        t = time.perf_counter()
        self._stamp = _manifest_stamp(self.config.index_dir)
        self._set(self.open_generation())
        self.ready_seconds = time.perf_counter() - t
        logger.info(
            "index %s generation %d ready in %.1f s",
            self.config.index_dir,
            self.current.number,
            self.ready_seconds,
        )
        self._watcher = threading.Thread(target=self._watch, name="embedgenre-reload", daemon=True)
        self._watcher.start()

    def _set(self, gen: Generation) -> None:
        previous, self.current = self.current, gen
        self.metrics.generation.set(gen.number)
        # requests still on the previous generation keep its encoders; older ones are closed
        self.encoders.retain([*gen.index.sets, *(previous.index.sets if previous else [])])
        self.heads.retain([gen.index, *([previous.index] if previous else [])])

    def reload_if_changed(self) -> bool:
        """Switch to the index's newest generation if its manifest changed; True if switched."""
        stamp = _manifest_stamp(self.config.index_dir)
        if stamp is None or stamp == self._stamp:
            return False
        for attempt in range(3):  # a writer may remove what a just-replaced manifest named
            try:
                gen = self.open_generation()
                break
            except EmbedgenreError as e:
                logger.warning("could not open the new index generation (%s); retrying", e)
                time.sleep(0.2 * (attempt + 1))
        else:
            self._stamp = stamp  # tried again when the manifest next changes
            return False
        self._stamp = stamp
        if self.current is not None and gen.number == self.current.number:
            return False
        old = self.current.number if self.current else None
        self._set(gen)
        self.metrics.reloads.inc()
        logger.info("switched from index generation %s to %d", old, gen.number)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.config.reload_interval_s):
            try:
                self.reload_if_changed()
            except Exception:  # the service keeps answering from the generation it has
                logger.exception(
                    "index reload failed; still serving generation %s",
                    self.current.number if self.current else None,
                )

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self.encoders.close()
