"""Micro-batches: inputs of concurrent requests encoded together, off the event loop.

A :class:`MicroBatcher` owns one worker thread and a bounded queue. Callers (request threads)
``submit`` one input and wait on its future; the worker takes the first waiting input, gathers
more until ``max_batch`` are in hand or ``max_wait`` seconds have passed since the first, and
runs the batch function once. A full queue refuses at once with :class:`Overloaded` (the
service answers 503 with Retry-After) instead of letting requests pile up. An input whose
request was cancelled (:class:`~embedgenre.serve.limits.RequestWork`) while it waited is dropped
from its batch: its future gets :class:`~embedgenre.serve.limits.Cancelled`.

:class:`BatchedEncoder` puts an encoder behind two batchers (preprocessed poster pixels and
texts) with the same ``encode_images`` / ``encode_texts`` calls, so the Predictor and the
Retriever use it unchanged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
from PIL import Image

from embedgenre.images import to_rgb
from embedgenre.serve.limits import Cancelled, RequestWork, current_work

logger = logging.getLogger(__name__)

_STOP = object()


class Overloaded(Exception):
    """The encode queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, kind: str, retry_after: int = 1):
        super().__init__(f"the {kind} encode queue is full")
        self.kind, self.retry_after = kind, retry_after


class MicroBatcher:
    """``fn(list of inputs) -> list of outputs`` called on micro-batches in one worker thread.

    ``on_batch(size, seconds)``, ``on_queue(depth)`` and ``on_drop(n)`` report to metrics;
    ``encoded`` and ``dropped`` count inputs.
    """

    def __init__(
        self,
        fn: Callable[[list], Sequence],
        kind: str,
        max_batch: int = 32,
        max_wait: float = 0.004,
        max_queue: int = 512,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.fn, self.kind = fn, kind
        self.max_batch, self.max_wait = max_batch, max_wait
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._on_batch, self._on_queue, self._on_drop = on_batch, on_queue, on_drop
        self.encoded = self.dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"embedgenre-{kind}", daemon=True)
        self._thread.start()

    def submit(self, item, work: RequestWork | None = None) -> Future:
        """Queue one input of the request ``work`` (if any); its future gets the output (or the
        batch's exception, or Cancelled)."""
        fut: Future = Future()
        if self._closed:  # a request of a generation already retired: the client retries
            raise Overloaded(self.kind)
        try:
            self._queue.put_nowait((item, fut, work))
        except queue.Full:
            raise Overloaded(self.kind) from None
        if self._on_queue:
            self._on_queue(self._queue.qsize())
        return fut

    def map(
        self, items: Sequence, timeout: float | None = None, work: RequestWork | None = None
    ) -> list:
        """Submit every item and wait for all outputs (in order). Blocks: call from a thread."""
        if work is not None:
            work.check()
        futures = [self.submit(x, work) for x in items]
        return [f.result(timeout) for f in futures]

    def close(self) -> None:
        """Stop after the inputs already queued are encoded."""
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=5)

    def _gather(self, first) -> list:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if nxt is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(nxt)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = self._gather(first)
            if self._on_queue:
                self._on_queue(self._queue.qsize())
            live = []
            for x, f, work in batch:
                if work is not None and work.cancelled:
                    if f.set_running_or_notify_cancel():
                        f.set_exception(Cancelled(f"the request was cancelled ({work.reason})"))
                    self.dropped += 1
                    if self._on_drop:
                        self._on_drop(1)
                elif f.set_running_or_notify_cancel():
                    live.append((x, f))
            if not live:
                continue
            t = time.perf_counter()
            try:
                outputs = self.fn([x for x, _ in live])
            except BaseException as e:  # every waiter hears of it; the worker keeps running
                logger.warning("%s batch of %d failed: %s", self.kind, len(live), e)
                for _, f in live:
                    f.set_exception(e)
                continue
            self.encoded += len(live)
            if self._on_batch:
                self._on_batch(len(live), time.perf_counter() - t)
            for (_, f), out in zip(live, outputs):
                f.set_result(out)


class BatchedEncoder:
    """An encoder whose poster and text encoding go through micro-batches.

    ``encode_images`` takes decoded PIL images (never paths: a service decodes uploads itself),
    preprocesses them in the calling thread, and batches the model call; ``encode_texts``
    batches texts. Both check the current request's cancel token (between posters, and before
    anything is queued) and hand it to the batcher. Every other attribute is the wrapped
    encoder's.
    """

    def __init__(self, encoder, make_batcher: Callable[[Callable, str], MicroBatcher]):
        self.encoder = encoder
        self._pixels = (
            make_batcher(lambda xs: encoder.encode_pixels(np.stack(xs)), "poster")
            if "image" in encoder.modalities
            else None
        )
        self._texts = (
            make_batcher(lambda ts: encoder.encode_texts(list(ts)), "text")
            if "text" in encoder.modalities
            else None
        )

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_images(self, images: Sequence[Image.Image], **_) -> np.ndarray:
        if self._pixels is None:
            self.encoder._require("image")
        for img in images:
            if not isinstance(img, Image.Image):
                raise TypeError("BatchedEncoder.encode_images takes decoded PIL images only")
        work = current_work()
        pixels = []
        for img in images:
            if work is not None:
                work.check()
            pixels.append(self.encoder.preprocess(to_rgb(img)))
        return _stack(self._pixels.map(pixels, work=work), self.encoder.dim)

    def encode_texts(self, texts: Sequence[str], **_) -> np.ndarray:
        if self._texts is None:
            self.encoder._require("text")
        return _stack(self._texts.map(list(texts), work=current_work()), self.encoder.dim)

    def close(self) -> None:
        for b in (self._pixels, self._texts):
            if b is not None:
                b.close()


def _stack(rows: list, dim: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.stack(rows), dtype=np.float32)
