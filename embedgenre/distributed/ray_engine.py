"""The Ray Data engine: decode posters in CPU tasks, encode them in a pool of model actors.

One embedding set's rows go through a streaming pipeline::

    from_items (rows in blocks) -> map_batches(decode_posters)   CPU tasks: read, decode,
                                                                  preprocess, thumbnail
                                -> map_batches(EncodeActor)       actor pool: the model loaded
                                                                  once per actor (GPUs if asked)
                                -> iter_batches on the driver     -> Part chunks

The driver only sees finished vectors and thumbnails (about 2 KB + 5 KB a poster) and hands them
to :func:`~embedgenre.indexing.build_index`, which saves each chunk in ``.partial/`` as it
arrives and commits once, exactly as for the local engine: a killed driver resumes from its
chunks, and Ray restarts a killed actor and retries its batch (Ray Data's actor pools restart
actors and retry their tasks without limit by default).

The encoder is built in each actor by name (or by the ``encoder_factory`` given), with the fit
of a catalog-fitted encoder (``hybrid:``) shipped from the driver, so every actor embeds in the
same space as the local engine would.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedgenre import encoders as registry
from embedgenre.encoders.base import CatalogFittedEncoder, ImageTransform
from embedgenre.encoders.pipeline import Prepared, TensorPipeline, prepare
from embedgenre.engines import (
    INPUT_PIPELINES,
    TEXT_BATCH,
    EncodeTask,
    Part,
    Skip,
    make_part,
    unreadable,
)
from embedgenre.errors import BadInputError, EmbedgenreError, PosterError, UnavailableError
from embedgenre.images import load_image, thumbnail_jpeg

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'embedgenre[distributed]' (which brings ray[data])"
DECODE_CPUS = 0.25  # logical CPUs a decode task asks for when the workers use no GPU
BLOCK_BATCHES = 4  # batches per input block: blocks small enough to spread over the actors


def _import_ray():
    # Ray is an optional extra and takes seconds to import: only runs on the ray engine load it.
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise UnavailableError(
            "The ray engine needs Ray Data, which is not installed here;",
            f"{INSTALL_HINT}, or use the local engine to encode in this process.",
            param="engine",
        ) from e
    return ray


@dataclass(frozen=True)
class Resources:
    """How one pipeline uses the cluster (recorded in :attr:`RayEngine.runs`)."""

    cluster_cpus: float
    cluster_gpus: float
    workers: int
    cpus_per_worker: float  # logical CPUs each encoder actor reserves
    threads_per_worker: int  # intra-op threads of each actor's model
    gpus_per_worker: float
    decode_cpus: float  # logical CPUs each decode task reserves


def plan_resources(
    cpus: float, gpus: float, workers: int | None, gpus_per_worker: float
) -> Resources:
    """Share a cluster of ``cpus`` CPUs and ``gpus`` GPUs between decode tasks and ``workers``
    encoder actors (None: one per GPU share, else one per 2 CPUs)."""
    if gpus_per_worker:
        fit = int(gpus // gpus_per_worker) if gpus else 0
        n = workers or max(1, fit)
        if n * gpus_per_worker > gpus + 1e-9:
            raise UnavailableError(
                f"{n} worker(s) x {gpus_per_worker} GPU each need {n * gpus_per_worker:g} GPUs but "
                f"the Ray cluster has {gpus:g};",
                "use fewer workers or fewer GPUs per worker, or none to encode on CPUs.",
                param="gpus_per_worker",
            )
        # a GPU actor needs one CPU to feed it; the rest of the CPUs decode
        per = 1.0 if cpus - n >= 1 else max(0.1, cpus / (2 * n))
        decode = max(0.25, min(1.0, (cpus - n * per) / max(1, 2 * n)))
        return Resources(cpus, gpus, n, per, max(1, int(per)), gpus_per_worker, decode)
    n = workers or max(1, int(cpus // 2))
    threads = max(1, int(cpus // n))
    # decode tasks must always find room next to the actors, or the pipeline stalls
    per = max(0.05, min(float(threads), (cpus - 2 * DECODE_CPUS) / n))
    return Resources(cpus, gpus, n, per, threads, 0.0, DECODE_CPUS)


class RayEngine:
    """Encode on a Ray cluster with Ray Data (see the module docstring).

    ``address``: None starts (or joins, when already initialised in this process) a local Ray;
    ``"auto"`` joins the cluster this machine belongs to; ``"ray://HOST:PORT"`` connects a client.
    ``workers``: encoder actors (default: one per ``gpus_per_worker`` share of the cluster's GPUs,
    else one per 2 CPUs). ``gpus_per_worker``: GPUs per actor, fractions allowed (0: CPUs).
    ``encoder_factory``: builds an encoder from its name in each actor (default: the registry).
    ``fault_hook``: called in an actor with its batch count before each batch (fault tests).
    ``input_pipeline``: "pil" (decode tasks decode and preprocess with Pillow), "tensor" (decode
    tasks only read bytes, and Pillow-decode what a device JPEG decoder does not take; each
    actor batch-decodes, resizes and thumbnails on its own device, as the local engine does on
    a GPU: :mod:`embedgenre.encoders.pipeline`), or "auto": "tensor" for GPU actors.

    After each pipeline, :attr:`runs` gets a record: rows, resources, seconds to the first
    chunk (startup: actors starting and loading their model) and in all. :attr:`rows_sent`
    counts every row sent to a worker by this engine.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 0.0,
        *,
        encoder_factory: Callable | None = None,
        fault_hook: Callable[[int], None] | None = None,
        input_pipeline: str = "auto",
    ) -> None:
        if input_pipeline not in INPUT_PIPELINES:
            raise BadInputError(
                f"unknown input pipeline {input_pipeline!r}",
                f"expected one of {', '.join(INPUT_PIPELINES)}",
                param="input_pipeline",
            )
        if workers is not None and workers < 1:
            raise BadInputError(
                f"The number of workers must be at least 1, got {workers}.", param="workers"
            )
        if gpus_per_worker < 0:
            raise BadInputError(
                f"GPUs per worker must be 0 or more (fractions allowed), got {gpus_per_worker}.",
                param="gpus_per_worker",
            )
        if address is not None and not (address == "auto" or "://" in address or ":" in address):
            raise BadInputError(
                f"Ray address {address!r}:",
                "expected auto, ray://HOST:PORT or HOST:PORT.",
                param="address",
            )
        _import_ray()  # a missing extra is reported before the run touches the index
        self.address = address
        self.workers = workers
        self.gpus_per_worker = float(gpus_per_worker)
        self.encoder_factory = encoder_factory
        self.fault_hook = fault_hook
        self.input_pipeline = input_pipeline
        self.rows_sent = 0
        self.runs: list[dict] = []

    def connect(self):
        """The ``ray`` module, initialised: joins ``address``, or starts a local Ray."""
        ray = _import_ray()
        if ray.is_initialized():
            return ray
        try:
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = self.address or "a new local cluster"
            raise UnavailableError(
                f"cannot start or join Ray at {where} ({str(e).splitlines()[0]});",
                "start a cluster with `ray start --head` and give the address auto, or give its "
                "ray://HOST:PORT.",
                param="address",
            ) from e
        return ray

    def resources(self) -> Resources:
        ray = self.connect()
        total = ray.cluster_resources()
        return plan_resources(
            float(total.get("CPU", 1)), float(total.get("GPU", 0)), self.workers,
            self.gpus_per_worker,
        )  # fmt: skip

    def encode(self, task: EncodeTask, encoder) -> Iterator[tuple[Part, list[Skip]]]:
        ray = self.connect()
        res = self.resources()
        t0 = time.perf_counter()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = task.progress
        ds = self._pipeline(ray, task, encoder, res)
        self.rows_sent += len(task)
        first = None
        rows: list[int] = []
        vecs: list[np.ndarray] = []
        thumbs: list[bytes | None] = []
        bad: list[Skip] = []
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                ok = batch["ok"]
                for i in np.flatnonzero(~ok):
                    bad.append(unreadable(task, int(batch["row"][i]), str(batch["reason"][i])))
                rows.extend(int(r) for r in batch["row"][ok])
                vecs.append(np.asarray(batch["vector"][ok], dtype=np.float32))
                if task.modality == "poster":
                    thumbs.extend(bytes(t) or None for t in batch["thumb"][ok])
                if len(rows) >= task.chunk_size:  # a block may hold several chunks' rows
                    first = first or time.perf_counter() - t0
                    v = np.concatenate(vecs)
                    n = task.chunk_size * (len(rows) // task.chunk_size)
                    for s in range(0, n, task.chunk_size):
                        e = s + task.chunk_size
                        part = self._part(task, rows[s:e], [v[s:e]], thumbs[s:e], encoder.dim)
                        yield part, bad
                        bad = []
                    rows, vecs, thumbs = rows[n:], [v[n:]], thumbs[n:]
        except ray.exceptions.RayError as e:
            raise _user_error(e) from e
        if rows or bad:
            first = first or time.perf_counter() - t0
            yield self._part(task, rows, vecs, thumbs, encoder.dim), bad
        self.runs.append(
            {
                "key": task.key,
                "rows": len(task),
                "resources": asdict(res),
                "first_chunk_s": round(first or 0.0, 3),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )

    def _part(self, task, rows, vecs, thumbs, dim) -> Part:
        return make_part(task, rows, vecs, dim, list(thumbs) if task.modality == "poster" else None)

    def _pipeline(self, ray, task: EncodeTask, encoder, res: Resources):
        order = range(len(task))
        if task.modality == "plot":  # similar lengths side by side: less padding per batch
            order = sorted(order, key=lambda i: -len(task.sources[i]))
        batch_size = (
            min(task.batch_size, TEXT_BATCH) if task.modality == "plot" else task.batch_size
        )
        blocks = max(1, math.ceil(len(task) / (batch_size * BLOCK_BATCHES)))
        ds = ray.data.from_items(
            [{"row": i, "src": task.sources[i]} for i in order], override_num_blocks=blocks
        )
        tensor = False
        if task.modality == "poster":
            transform = getattr(encoder, "transform", None)
            if not isinstance(transform, ImageTransform):
                raise BadInputError(
                    f"encoder {task.encoder_name!r} has no ImageTransform to preprocess posters "
                    "in Ray decode tasks;",
                    "index it with the local engine.",
                    param="engine",
                )
            tensor = self.input_pipeline == "tensor" or (
                self.input_pipeline == "auto" and bool(res.gpus_per_worker)
            )
            ds = ds.map_batches(
                read_posters if tensor else decode_posters,
                fn_kwargs={"transform": transform},
                batch_size=batch_size,
                batch_format="numpy",
                num_cpus=res.decode_cpus,
            )
        remote = {"num_cpus": res.cpus_per_worker}
        if res.gpus_per_worker:
            remote["num_gpus"] = res.gpus_per_worker
        return ds.map_batches(
            EncodeActor,
            fn_constructor_kwargs={
                "name": task.encoder_name,
                "modality": task.modality,
                "factory": self.encoder_factory,
                "device": "cuda" if res.gpus_per_worker else "cpu",
                "options": task.options,
                "threads": res.threads_per_worker,
                "state": _fit_state(encoder),
                "batch_size": batch_size,
                "fault_hook": self.fault_hook,
                "tensor_input": tensor,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=res.workers),
            **remote,
        )


def _user_error(e: Exception) -> EmbedgenreError:
    """The EmbedgenreError a worker raised (weights not found, say), else one naming the failure."""
    cause = e
    while cause is not None:
        if isinstance(cause, EmbedgenreError):
            return type(cause)(str(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__
    return EmbedgenreError(
        f"the Ray pipeline failed: {str(e).splitlines()[0]}; the chunks already encoded are "
        "kept: fix the cause and run the same command again to resume."
    )


def _fit_state(encoder) -> dict[str, bytes] | None:
    """The files of a catalog-fitted encoder's fit, to be loaded again in each actor."""
    if not isinstance(encoder, CatalogFittedEncoder):
        return None
    with tempfile.TemporaryDirectory(prefix="embedgenre-fit-") as tmp:
        encoder.save_state(Path(tmp))
        return {
            str(f.relative_to(tmp)): f.read_bytes() for f in Path(tmp).rglob("*") if f.is_file()
        }


def decode_posters(batch: dict, transform: ImageTransform) -> dict:
    """Ray decode task: poster paths -> preprocessed pixels, thumbnails, and why a row failed.

    Out: row (n,), ok (n,) bool, reason (n,) str, thumb (n,) bytes, pixels (n, 3, H, W) float32
    (zeros where ok is False).
    """
    n = len(batch["row"])
    pixels = np.zeros((n, 3, transform.out_height, transform.size), np.float32)
    ok = np.zeros(n, bool)
    reason = np.array([""] * n, dtype=object)
    thumb = np.array([b""] * n, dtype=object)
    for i, path in enumerate(batch["src"]):
        try:
            img = load_image(str(path), draft_size=transform.draft_size)
            pixels[i] = transform(img)
            thumb[i] = thumbnail_jpeg(img)
            ok[i] = True
        except PosterError as e:
            reason[i] = str(e)
    return {"row": batch["row"], "ok": ok, "reason": reason, "thumb": thumb, "pixels": pixels}


def read_posters(batch: dict, transform: ImageTransform) -> dict:
    """Ray read task for actors that decode on their own device: poster paths -> the bytes of
    each JPEG the device decoder takes, Pillow's pixels and thumbnail for the others, and why
    a row failed.

    Out: row, src, ok (n,) bool, reason (n,) str, data (n,) bytes (JPEG bytes or b""), raw
    (n,) bytes (uint8 RGB pixels or b""), shape (n, 2) int64 (height, width of raw), thumb
    (n,) bytes.
    """
    n = len(batch["row"])
    ok = np.zeros(n, bool)
    reason = np.array([""] * n, dtype=object)
    data = np.array([b""] * n, dtype=object)
    raw = np.array([b""] * n, dtype=object)
    thumb = np.array([b""] * n, dtype=object)
    shape = np.zeros((n, 2), np.int64)
    for i, path in enumerate(batch["src"]):
        p = prepare(str(path), transform.draft_size, thumbnails=True)
        if p.error is not None:
            reason[i] = str(p.error)
            continue
        ok[i] = True
        if p.data is not None:
            data[i] = p.data
        else:
            raw[i] = p.pixels.tobytes()
            shape[i] = p.pixels.shape[:2]
            thumb[i] = p.thumb or b""
    return {"row": batch["row"], "src": batch["src"], "ok": ok, "reason": reason, "data": data,
            "raw": raw, "shape": shape, "thumb": thumb}  # fmt: skip


def _prepared(batch: dict) -> list[Prepared]:
    """The rows of a :func:`read_posters` batch as the tensor pipeline's Prepared items."""
    out = []
    for i, src in enumerate(batch["src"]):
        if not batch["ok"][i]:
            out.append(Prepared(str(src), error=PosterError(str(batch["reason"][i]))))
        elif len(batch["data"][i]):
            out.append(Prepared(str(src), data=bytes(batch["data"][i])))
        else:
            h, w = (int(v) for v in batch["shape"][i])
            pixels = np.frombuffer(bytes(batch["raw"][i]), np.uint8).reshape(h, w, 3)
            out.append(Prepared(str(src), pixels=pixels, thumb=bytes(batch["thumb"][i]) or None))
    return out


class EncodeActor:
    """Ray actor: loads the encoder once, then encodes batches of pixels or plot texts."""

    def __init__(
        self,
        name: str,
        modality: str,
        factory: Callable | None,
        device: str,
        threads: int,
        state: dict[str, bytes] | None,
        batch_size: int,
        fault_hook: Callable[[int], None] | None = None,
        options: dict | None = None,
        tensor_input: bool = False,
    ) -> None:
        # this process is the actor's own: its thread counts are set before the model loads
        os.environ["EMBEDGENRE_ORT_THREADS"] = str(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self.encoder = (
            factory(name)
            if factory
            else registry.create_encoder(name, device=device, **(options or {}))
        )
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)
        if state:
            self._state_dir = tempfile.TemporaryDirectory(prefix="embedgenre-fit-")
            for rel, data in state.items():
                path = Path(self._state_dir.name) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            self.encoder.load_state(Path(self._state_dir.name))
        self.modality = modality
        self.batch_size = batch_size
        self.fault_hook = fault_hook
        self.batches = 0
        self.pipeline = (
            TensorPipeline(
                self.encoder.transform, str(self.encoder.device), decode_on_device=True,
                thumbnails=True,
            )
            if tensor_input
            else None
        )  # fmt: skip

    def __call__(self, batch: dict) -> dict:
        self.batches += 1
        if self.fault_hook is not None:
            self.fault_hook(self.batches)
        n = len(batch["row"])
        vectors = np.zeros((n, self.encoder.dim), np.float32)
        if self.modality == "plot":
            texts = [str(t) for t in batch["src"]]
            vectors[:] = self.encoder.encode_texts(texts, batch_size=self.batch_size)
            return {"row": batch["row"], "ok": np.ones(n, bool), "vector": vectors}
        if self.pipeline is not None:
            return self._decode_and_encode(batch, vectors)
        ok = batch["ok"]
        if ok.any():
            vectors[ok] = self.encoder.encode_pixels(batch["pixels"][ok])
        return {
            "row": batch["row"],
            "ok": ok,
            "reason": batch["reason"],
            "thumb": batch["thumb"],
            "vector": vectors,
        }

    def _decode_and_encode(self, batch: dict, vectors: np.ndarray) -> dict:
        """A :func:`read_posters` batch decoded and preprocessed on this actor's device."""
        n = len(batch["row"])
        pixels, rows, failures, thumbs = self.pipeline.finish(_prepared(batch))
        ok = np.zeros(n, bool)
        ok[rows] = True
        reason = np.array([""] * n, dtype=object)
        for i, err in failures:
            reason[i] = str(err)
        thumb = np.array([b""] * n, dtype=object)
        for i, t in zip(rows, thumbs):
            thumb[i] = t or b""
        if rows:
            vectors[rows] = self.encoder.encode_pixel_tensor(pixels)
        return {"row": batch["row"], "ok": ok, "reason": reason, "thumb": thumb, "vector": vectors}
