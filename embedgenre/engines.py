"""Encoding engines: what turns the items an index run must encode into chunks of vectors.

:class:`embedgenre.indexing.IndexRun` plans a run (what is reused, what must be encoded),
hands each embedding set's work to an engine as one :class:`EncodeTask`, saves every chunk the
engine yields in ``.partial/`` and commits once. The engine only encodes: it never reads or
writes the index, so every engine gives the same index and the same crash safety.

- :class:`LocalEngine` (the default): decode threads feed the model in this process.
- :class:`embedgenre.distributed.RayEngine`: a Ray Data pipeline (decode tasks, an actor pool of
  encoders), for catalogs that outgrow one machine.

An engine is any object with ``name`` and ``encode(task, encoder)``, which yields
``(Part, unreadable)`` pairs: a :class:`Part` of at most ``task.chunk_size`` encoded rows and the
posters that could not be read since the previous pair (:class:`Skip` records).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from embedgenre.encoders import iter_image_batches
from embedgenre.encoders.base import ImageTransform
from embedgenre.encoders.batching import gpu_decode_workers
from embedgenre.encoders.pipeline import TensorPipeline, device_batch_size, iter_tensor_batches
from embedgenre.errors import BadInputError
from embedgenre.images import thumbnail_jpeg

logger = logging.getLogger(__name__)

# Plots are padded to the longest text of a batch: on CPU, MiniLM through ONNX Runtime ran at
# ~75 plots/s with batches of 8-16 and ~47 with 64 (benchmarks/encode_speed.py).
TEXT_BATCH = 16


@dataclass
class Part:
    """Rows of one set: a committed set's kept rows, a resumed chunk, or a newly encoded one."""

    ids: np.ndarray  # str (n,)
    hashes: np.ndarray  # str (n,)
    vectors: np.ndarray  # float32 (n, dim)
    thumbs: list[bytes | None] | None = None  # posters: JPEG thumbnail of each row

    def take(self, keep: np.ndarray) -> Part:
        thumbs = [t for t, k in zip(self.thumbs, keep) if k] if self.thumbs is not None else None
        return Part(self.ids[keep], self.hashes[keep], np.asarray(self.vectors[keep]), thumbs)


@dataclass(frozen=True)
class Skip:
    """A poster that could not be read: the item, its file, why, and the hash of its bytes
    (None when they could not be read at all). A skip with a hash is not retried while the
    poster's bytes keep that hash."""

    id: str
    path: str
    reason: str
    hash: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The record as the skip list and ``index --json`` write it (no hash when unknown)."""
        doc = {"id": self.id, "path": self.path, "reason": self.reason}
        if self.hash is not None:
            doc["hash"] = self.hash
        return doc

    @classmethod
    def of(cls, doc: dict) -> Skip:
        """A record read back from an index's skip list (checked there to have a str id)."""
        h = doc.get("hash")
        return cls(
            id=str(doc["id"]),
            path=str(doc.get("path", "")),
            reason=str(doc.get("reason", "")),
            hash=h if isinstance(h, str) else None,
        )


@dataclass(frozen=True)
class EncodeTask:
    """The rows of one embedding set that must be encoded in this run.

    ``sources[i]`` is the poster path (modality "poster") or the plot text ("plot") of the item
    ``ids[i]`` whose content hash is ``hashes[i]``. ``state_dir``: where a catalog-fitted
    encoder's fit is saved (engines that load the encoder elsewhere load it from there).
    ``options``: what else the registry is given to build the encoder (backend, precision), so
    engines that build their own copies build the same one.
    """

    key: str
    modality: str
    encoder_name: str
    ids: list[str]
    hashes: list[str]
    sources: list[str]
    batch_size: int = 32
    chunk_size: int = 256
    progress: bool = False
    state_dir: Path | None = None
    options: dict = field(default_factory=dict)
    batch_from_memory: bool = False  # on a GPU, size poster batches from its free memory

    def __len__(self) -> int:
        return len(self.ids)


class Engine(Protocol):
    name: str

    def encode(self, task: EncodeTask, encoder) -> Iterator[tuple[Part, list[Skip]]]: ...


def unreadable(task: EncodeTask, i: int, reason: str) -> Skip:
    """The skip record of row ``i`` of ``task`` (a poster that could not be read)."""
    return Skip(id=task.ids[i], path=str(task.sources[i]), reason=reason, hash=task.hashes[i])


def make_part(task: EncodeTask, rows: list[int], vectors: list[np.ndarray], dim: int, thumbs=None):
    """A :class:`Part` of ``task``'s rows ``rows`` with their vectors (a list of batches) and,
    for posters, thumbnails (a list row-aligned with ``rows``)."""
    ids = np.array([task.ids[i] for i in rows], dtype=str)
    hashes = np.array([task.hashes[i] for i in rows], dtype=str)
    v = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    return Part(ids, hashes, np.ascontiguousarray(v, dtype=np.float32), thumbs)


INPUT_PIPELINES = ("auto", "pil", "tensor")


class LocalEngine:
    """Encode in this process: posters are decoded in worker threads while the model runs.

    ``input_pipeline``: "pil" (threads decode and preprocess with Pillow: the CPU path),
    "tensor" (:mod:`embedgenre.encoders.pipeline`: threads read bytes, JPEGs are decoded in
    batches and preprocessed as tensors on the model's device), or "auto": "tensor" for a torch
    image tower on a GPU, else "pil".
    """

    name = "local"

    def __init__(self, input_pipeline: str = "auto") -> None:
        if input_pipeline not in INPUT_PIPELINES:
            raise BadInputError(
                f"unknown input pipeline {input_pipeline!r}",
                f"expected one of {', '.join(INPUT_PIPELINES)}",
                param="input_pipeline",
            )
        self.input_pipeline = input_pipeline

    def encode(self, task: EncodeTask, encoder) -> Iterator[tuple[Part, list[Skip]]]:
        bar = progress_bar(len(task), f"{task.modality}s", task.progress)
        made: dict[int, bytes] | None = {} if task.modality == "poster" else None
        if task.modality == "plot":
            batches = _plot_batches(encoder, task)
        elif uses_tensor_pipeline(encoder, self.input_pipeline):
            batches = _tensor_batches(encoder, task, made)
        else:
            batches = _poster_batches(encoder, task, made)
        vecs: list[np.ndarray] = []
        ok: list[int] = []
        bad: list[Skip] = []
        for batch_vecs, batch_ok, batch_bad in batches:
            vecs.append(batch_vecs)
            ok.extend(batch_ok)
            bad.extend(batch_bad)
            bar(len(batch_ok) + len(batch_bad))
            if len(ok) >= task.chunk_size:
                yield _local_part(task, ok, vecs, encoder.dim, made), bad
                vecs, ok, bad = [], [], []
        if ok or bad:
            yield _local_part(task, ok, vecs, encoder.dim, made), bad
        bar(None)


def _local_part(task, ok, vecs, dim, made: dict[int, bytes] | None) -> Part:
    thumbs = [made.pop(i, None) for i in ok] if made is not None else None
    return make_part(task, ok, vecs, dim, thumbs)


def _plot_batches(encoder, task: EncodeTask):
    """(vectors, task rows, []) per group of plots, longest plots first: a batch pads its texts
    to the longest one, so batches of near-equal lengths waste little (8-17% more plots/s than
    groups in catalog order in our runs; benchmarks/encode_speed.py measures it)."""
    batch_size = min(task.batch_size, TEXT_BATCH)
    order = sorted(range(len(task)), key=lambda i: -len(task.sources[i]))
    group = batch_size * 8
    for start in range(0, len(order), group):
        rows = order[start : start + group]
        texts = [task.sources[i] for i in rows]
        yield encoder.encode_texts(texts, batch_size=batch_size), rows, []


def _poster_batches(encoder, task: EncodeTask, thumbs: dict[int, bytes]):
    """(vectors, task rows, unreadable posters) per batch, decoding in worker threads across the
    whole run, so the model never waits at a checkpoint. Each decoded poster's thumbnail is made
    in the same worker and put in ``thumbs`` by task row."""
    transform = getattr(encoder, "transform", None)
    on_gpu = str(getattr(encoder, "device", "cpu")).startswith("cuda")
    batches = iter_image_batches(
        task.sources,
        encoder.preprocess,
        task.batch_size,
        workers=gpu_decode_workers() if on_gpu else None,  # on a GPU the CPUs only decode
        draft_size=transform.draft_size if transform is not None else None,
        on_image=thumbnail_jpeg,
        extras=thumbs,
        prefetch_batches=4 if on_gpu else 2,
    )
    for batch, rows, failures in batches:
        vecs = encoder.encode_pixels(batch) if len(rows) else np.zeros((0, encoder.dim), np.float32)
        yield vecs, rows, [unreadable(task, i, str(err)) for i, err in failures]


def uses_tensor_pipeline(encoder, choice: str = "auto") -> bool:
    """Whether posters for ``encoder`` go through the tensor pipeline (see LocalEngine)."""
    if choice == "pil":
        return False
    transform = getattr(encoder, "transform", None)
    tensor_ok = isinstance(transform, ImageTransform) and transform.interpolation != "lanczos"
    if choice == "tensor":
        if not tensor_ok:
            raise BadInputError(
                f"encoder {encoder.name!r} has no tensor form of its preprocessing",
                "use input pipeline 'pil'",
                param="input_pipeline",
            )
        return True
    on_gpu = str(getattr(encoder, "device", "cpu")).startswith("cuda")
    return on_gpu and tensor_ok and encoder._pixel_tensor_runner() is not None


def _tensor_batches(encoder, task: EncodeTask, thumbs: dict[int, bytes]):
    """(vectors, task rows, unreadable posters) per batch from the tensor pipeline: bytes read
    in threads, decoded, resized and thumbnailed on the encoder's device."""
    device = str(getattr(encoder, "device", "cpu"))
    pipe = TensorPipeline(encoder.transform, device=device, thumbnails=True)
    batch_size = task.batch_size
    runner = encoder._pixel_tensor_runner()
    if task.batch_from_memory and runner is not None:
        batch_size = device_batch_size(runner, encoder.transform, device, task.batch_size)
        logger.info(
            "%s: %d posters per batch (from the device's free memory)", task.key, batch_size
        )
    for batch in iter_tensor_batches(task.sources, pipe, batch_size, prefetch=3):
        vecs = (
            encoder.encode_pixel_tensor(batch.pixels)
            if batch.rows
            else np.zeros((0, encoder.dim), np.float32)
        )
        thumbs.update(zip(batch.rows, batch.thumbs or []))
        yield vecs, batch.rows, [unreadable(task, i, str(err)) for i, err in batch.failures]


def progress_bar(total: int, unit: str, enabled: bool):
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
