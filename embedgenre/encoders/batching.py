"""Decode and preprocess images in worker threads while the model runs in the caller's thread.

Pillow's decoder and resizer and ONNX Runtime all release the GIL, so one or two decode threads
overlap with inference: the model never waits for JPEG decoding when decoding is faster than it.

    for batch, rows, failures in iter_image_batches(paths, enc.preprocess, batch_size=32):
        vectors[rows] = enc.encode_pixels(batch)   # batch: float32 (len(rows), 3, H, W)
        for i, err in failures: log(paths[i], err)  # PosterError per unreadable file
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from embedgenre.encoders.cpu import available_cores
from embedgenre.errors import PosterError
from embedgenre.images import load_image, to_rgb

logger = logging.getLogger(__name__)

Batch = tuple[np.ndarray, list[int], list[tuple[int, PosterError]]]


def default_workers() -> int:
    """Decode threads next to a model on the CPU: 1 per 2 available cores, at least 1, at most 4."""
    return max(1, min(4, available_cores() // 2))


def gpu_decode_workers() -> int:
    """Decode threads feeding a GPU: every core but the one that drives it. (Decode processes
    instead of threads were slower on a 16-core H200 machine: 521-625 vs 863-916 posters/s over
    800 posters, pool start and pickled pixels included; benchmarks/gpu.py.)"""
    return max(1, available_cores() - 1)


def _load_one(
    item: str | Path | Image.Image,
    preprocess: Callable[[Image.Image], np.ndarray],
    draft_size: tuple[int, int] | None,
    on_image: Callable[[Image.Image], object] | None = None,
) -> tuple[np.ndarray, object]:
    if isinstance(item, Image.Image):
        img = to_rgb(item)
    else:
        img = load_image(item, draft_size=draft_size)
    return preprocess(img), (on_image(img) if on_image is not None else None)


def iter_image_batches(
    images: Sequence[str | Path | Image.Image],
    preprocess: Callable[[Image.Image], np.ndarray],
    batch_size: int = 32,
    workers: int | None = None,
    draft_size: tuple[int, int] | None = None,
    prefetch_batches: int = 2,
    on_image: Callable[[Image.Image], object] | None = None,
    extras: dict[int, object] | None = None,
) -> Iterator[Batch]:
    """Yield (batch, rows, failures) in input order.

    batch: float32 (len(rows), 3, H, W) stacked ``preprocess`` outputs; rows: positions in
    ``images`` of the batch's rows; failures: (position, PosterError) for images that could not
    be read since the previous yield (they are skipped, not in any batch). The last batch may be
    short; a final yield may carry only failures (an empty batch). At most
    ``prefetch_batches * batch_size`` images are decoded ahead of the consumer.
    draft_size: passed to ``load_image`` (JPEG reduced-scale decoding), e.g. transform.draft_size.
    on_image: called in the worker with each decoded image; its result is stored in
    ``extras[position]`` before the batch holding that position is yielded (thumbnails, say).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    workers = default_workers() if workers is None else max(1, int(workers))
    n = len(images)
    ahead = max(batch_size, prefetch_batches * batch_size)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embedgenre-decode") as pool:
        pending: deque[tuple[int, Future]] = deque()
        next_submit = 0

        def top_up() -> None:
            nonlocal next_submit
            while next_submit < n and len(pending) < ahead:
                pending.append(
                    (
                        next_submit,
                        pool.submit(
                            _load_one, images[next_submit], preprocess, draft_size, on_image
                        ),
                    )
                )
                next_submit += 1

        arrays: list[np.ndarray] = []
        rows: list[int] = []
        failures: list[tuple[int, PosterError]] = []
        top_up()
        try:
            while pending:
                i, fut = pending.popleft()
                top_up()
                try:
                    array, extra = fut.result()
                    arrays.append(array)
                    rows.append(i)
                    if extras is not None:
                        extras[i] = extra
                except PosterError as e:
                    failures.append((i, e))
                if len(arrays) == batch_size:
                    yield np.stack(arrays), rows, failures
                    arrays, rows, failures = [], [], []
            if arrays or failures:
                batch = np.stack(arrays) if arrays else np.zeros((0, 3, 1, 1), dtype=np.float32)
                yield batch, rows, failures
        finally:
            for _, fut in pending:
                fut.cancel()
