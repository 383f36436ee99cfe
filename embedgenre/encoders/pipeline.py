"""The tensor input pipeline: posters to model input on the model's own device.

On a GPU the CPUs cannot keep up with decoding and resizing (benchmarks/results/gpu.md: decode
threads fed a 7-8k posters/s model at 0.8-0.9k/s), so the work is split as clip-retrieval and
DALI split it:

- threads only read file bytes and sniff each JPEG's header (:func:`jpeg_header`);
- JPEGs the device decoder takes (baseline 8-bit, grey or YCbCr) are decoded in batches on the
  device (``torchvision.io.decode_jpeg``: nvJPEG on CUDA, libjpeg-turbo on CPU);
- everything else (PNG, WebP, CMYK or progressive JPEGs, odd headers) is decoded by Pillow in
  the same threads, as :func:`embedgenre.images.load_image` does, so it never waits for the
  device; a JPEG the device decoder refuses is decoded again the same way, alone, and a file
  neither can read is reported for its own row (a ``PosterError``), never for the batch;
- resize, centre crop and normalisation run as tensor ops on the device (:class:`TensorTransform`,
  the model's :class:`~embedgenre.encoders.base.ImageTransform` on tensors), as do the
  thumbnails an index stores (resized and JPEG-encoded on the device);
- a stage thread prepares the next batches on a CUDA stream of its own while the model runs
  (a bounded queue: at most ``prefetch`` batches ahead); pixels Pillow decoded go up from
  pinned host buffers.

    pipe = TensorPipeline(encoder.transform, device="cuda")
    for batch in iter_tensor_batches(paths, pipe, batch_size=256):
        vectors[batch.rows] = encoder.encode_pixel_tensor(batch.pixels)

Every part runs on CPU too (``device="cpu"``), which is how it is tested.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedgenre.encoders.base import ImageTransform
from embedgenre.encoders.batching import gpu_decode_workers
from embedgenre.errors import PosterError
from embedgenre.images import (
    THUMB_HEIGHT,
    check_poster_file,
    load_image,
    open_regular,
    thumbnail_jpeg,
)

logger = logging.getLogger(__name__)

# Start-of-frame markers: 0xC0 baseline, 0xC1 extended sequential (both Huffman), which the
# device decoders take; the others (progressive, lossless, arithmetic) go to Pillow.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
DEVICE_SOF = (0xC0, 0xC1)
DEVICE_MAX_PIXELS = 40_000_000  # larger JPEGs are decoded (and bomb-checked) by Pillow
GROUP = 32  # images of one size resized together


@dataclass(frozen=True)
class JpegHeader:
    """What a JPEG's start-of-frame segment says: the frame type marker, sample precision in
    bits, size in pixels and colour components (1 grey, 3 YCbCr, 4 CMYK/YCCK)."""

    sof: int
    precision: int
    width: int
    height: int
    components: int

    @property
    def device_decodable(self) -> bool:
        """True when a batched device decoder takes this JPEG as it is."""
        return (
            self.sof in DEVICE_SOF
            and self.precision == 8
            and self.components in (1, 3)
            and 0 < self.width * self.height <= DEVICE_MAX_PIXELS
        )


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The start-of-frame of the JPEG in ``data``, or None when ``data`` is not a JPEG or its
    markers cannot be followed to a frame header (a truncated or odd file)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker in _SOF:
            if pos + 10 > n:
                return None
            return JpegHeader(
                sof=marker,
                precision=data[pos + 4],
                height=int.from_bytes(data[pos + 5 : pos + 7], "big"),
                width=int.from_bytes(data[pos + 7 : pos + 9], "big"),
                components=data[pos + 9],
            )
        pos += 2 + length
    return None


def read_poster_bytes(path: str | Path) -> bytes:
    """The bytes of the poster file at ``path``, after the checks :func:`load_image` makes
    (a regular file, under the size cap, with an image signature). Raises PosterError."""
    check_poster_file(path)
    try:
        with open_regular(path) as f:
            return f.read()
    except OSError as e:
        raise PosterError(f"poster {path}: cannot be read ({e.strerror or e})") from e


@dataclass
class Prepared:
    """One poster after the thread stage: JPEG bytes for the device decoder (``data``), or
    pixels Pillow decoded (``pixels``, uint8 (H, W, 3)) with their thumbnail, or the error."""

    path: str
    data: bytes | None = None
    pixels: np.ndarray | None = None
    thumb: bytes | None = None
    error: PosterError | None = None


def prepare(path: str | Path, draft_size: tuple[int, int] | None, thumbnails: bool) -> Prepared:
    """The thread stage for one poster: read its bytes; keep them when the device decoder takes
    them, else decode with Pillow (reduced-size JPEG decode to ``draft_size``) here."""
    path = str(path)
    try:
        data = read_poster_bytes(path)
        header = jpeg_header(data)
        if header is not None and header.device_decodable:
            return Prepared(path, data=data)
        return _pillow(path, draft_size, thumbnails)
    except PosterError as e:
        return Prepared(path, error=e)


def _pillow(path: str, draft_size, thumbnails: bool) -> Prepared:
    try:
        img = load_image(path, draft_size=draft_size)
    except PosterError as e:
        return Prepared(path, error=e)
    thumb = thumbnail_jpeg(img) if thumbnails else None
    return Prepared(path, pixels=np.array(img), thumb=thumb)


class TensorTransform:
    """An :class:`ImageTransform` on uint8 (3, H, W) tensors of any size, on any device.

    The same source box as the Pillow transform, an antialiased resize with the same filter
    (bicubic, bilinear or nearest), rounding and clipping to 8 bits as Pillow does, then
    ``(x / 255 - mean) / std``. Images of one size are resized together.
    """

    def __init__(self, transform: ImageTransform, device: str = "cpu") -> None:
        import torch

        if transform.interpolation not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(
                f"interpolation {transform.interpolation!r} has no tensor form; "
                "expected bicubic, bilinear or nearest"
            )
        self.transform = transform
        self.device = torch.device(device)
        std = torch.tensor(transform.std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self.device)
        self.offset = (-torch.tensor(transform.mean) / std).view(1, 3, 1, 1).to(self.device)

    def __call__(self, images: Sequence) -> object:
        """uint8 (3, H, W) tensors -> float32 (n, 3, out_height, size) on the device."""
        import torch

        t = self.transform
        out = torch.empty((len(images), 3, t.out_height, t.size), device=self.device)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[-2:]), []).append(i)
        for (height, width), idx in groups.items():
            for s in range(0, len(idx), GROUP):  # bounded memory: full-size posters as floats
                part = idx[s : s + GROUP]
                batch = torch.stack([images[i] for i in part]).to(self.device, non_blocking=True)
                out[part] = self._resize(batch, width, height)
        return out.mul_(self.scale).add_(self.offset)

    def _resize(self, batch, width: int, height: int):
        import torch.nn.functional as F

        t = self.transform
        left, top, right, bottom = t.box(width, height)
        x0, y0 = int(round(left)), int(round(top))
        x1, y1 = max(x0 + 1, int(round(right))), max(y0 + 1, int(round(bottom)))
        crop = batch[:, :, y0:y1, x0:x1].float()
        size = (t.out_height, t.size)
        if crop.shape[-2:] == size:
            return crop
        mode = t.interpolation
        if mode == "nearest":
            return F.interpolate(crop, size=size, mode="nearest")
        resized = F.interpolate(crop, size=size, mode=mode, antialias=True, align_corners=False)
        return resized.round_().clamp_(0, 255)


def thumbnails(images: Sequence, height: int = THUMB_HEIGHT) -> list[bytes]:
    """uint8 (3, H, W) tensors -> JPEG bytes scaled to ``height`` px (never up), on their own
    device (``torchvision.io.encode_jpeg`` runs on CUDA tensors with nvJPEG)."""
    import torch.nn.functional as F
    from torchvision.io import encode_jpeg

    small = []
    for img in images:
        h, w = img.shape[-2:]
        if h > height:
            size = (height, max(1, round(w * height / h)))
            img = F.interpolate(img[None].float(), size=size, mode="area")[0]
            img = img.round_().clamp_(0, 255).byte()
        small.append(img.contiguous())
    if not small:
        return []
    try:
        encoded = encode_jpeg(small, quality=75)
    except RuntimeError:  # a device without a JPEG encoder: encode on the CPU
        encoded = encode_jpeg([t.cpu() for t in small], quality=75)
    return [e.cpu().numpy().tobytes() for e in encoded]


@dataclass
class TensorBatch:
    """One batch from the pipeline: ``pixels`` float32 (len(rows), 3, H, W) on the device,
    ``rows`` their input positions, ``failures`` (position, PosterError) for unreadable
    posters, ``thumbs`` the thumbnail of each row (when asked), ``ready``: a CUDA event the
    consumer's stream waits on before reading ``pixels`` (None on CPU)."""

    pixels: object
    rows: list[int]
    failures: list[tuple[int, PosterError]] = field(default_factory=list)
    thumbs: list[bytes | None] | None = None
    ready: object = None


class TensorPipeline:
    """Decode and preprocess posters for a model on ``device`` (see the module docstring).

    ``decode_on_device``: batch-decode JPEGs with ``torchvision.io.decode_jpeg`` on ``device``
    (default: on CUDA devices; on CPU Pillow's reduced-size decode is faster, so only tests
    turn it on there). ``thumbnails``: make each poster's index thumbnail too.
    """

    def __init__(
        self,
        transform: ImageTransform,
        device: str = "cpu",
        decode_on_device: bool | None = None,
        thumbnails: bool = False,
    ) -> None:
        self.transform = transform
        self.device = str(device)
        self.on_cuda = self.device.startswith("cuda")
        self.decode_on_device = self.on_cuda if decode_on_device is None else decode_on_device
        self.thumbnails = thumbnails
        self.tensor_transform = TensorTransform(transform, self.device)

    def prepare(self, path: str | Path) -> Prepared:
        """The thread stage (read bytes; Pillow for what the device decoder does not take)."""
        if not self.decode_on_device:
            return _pillow(str(path), self.transform.draft_size, self.thumbnails)
        return prepare(path, self.transform.draft_size, self.thumbnails)

    def finish(self, items: Sequence[Prepared]) -> tuple[object, list[int], list, list]:
        """The device stage for prepared posters: (pixels float32 (m, 3, H, W) on the device,
        the positions in ``items`` they come from, [(position, PosterError)], thumbnails of
        the m rows (empty when not asked))."""
        import torch

        images: dict[int, object] = {}
        thumbs: dict[int, bytes | None] = {}
        failures: list[tuple[int, PosterError]] = []
        jpegs = [i for i, p in enumerate(items) if p.data is not None]
        decoded = self._decode(items, jpegs)
        for i, p in enumerate(items):
            if p.error is not None:
                failures.append((i, p.error))
            elif p.pixels is not None:
                images[i] = self._upload(p.pixels)
                thumbs[i] = p.thumb
            elif decoded.get(i) is not None:
                images[i] = decoded[i]
            else:  # the device decoder refused it: Pillow decodes it alone, or names the fault
                q = _pillow(p.path, self.transform.draft_size, self.thumbnails)
                if q.error is not None:
                    failures.append((i, q.error))
                else:
                    images[i] = self._upload(q.pixels)
                    thumbs[i] = q.thumb
        rows = sorted(images)
        if not rows:
            t = self.transform
            return torch.zeros((0, 3, t.out_height, t.size), device=self.device), [], failures, []
        ordered = [images[i] for i in rows]
        pixels = self.tensor_transform(ordered)
        made: list[bytes | None] = []
        if self.thumbnails:
            todo = [k for k, i in enumerate(rows) if i not in thumbs]
            fresh = dict(zip(todo, thumbnails([ordered[k] for k in todo])))
            made = [thumbs[i] if i in thumbs else fresh[k] for k, i in enumerate(rows)]
        return pixels, rows, sorted(failures, key=lambda f: f[0]), made

    def _upload(self, pixels: np.ndarray):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
        if self.on_cuda:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _decode(self, items: Sequence[Prepared], jpegs: list[int]) -> dict[int, object]:
        """Batch-decode the JPEG bytes of ``items[jpegs]`` on the device; a batch the decoder
        refuses is retried one poster at a time, and a poster it still refuses maps to None."""
        if not jpegs:
            return {}
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        inputs = [torch.frombuffer(bytearray(items[i].data), dtype=torch.uint8) for i in jpegs]
        try:
            out = decode_jpeg(inputs, mode=ImageReadMode.RGB, device=self.device)
            return dict(zip(jpegs, out))
        except RuntimeError as e:
            logger.debug("batch JPEG decode refused %d posters (%s); one at a time", len(jpegs), e)
        result: dict[int, object] = {}
        for i, x in zip(jpegs, inputs):
            try:
                result[i] = decode_jpeg([x], mode=ImageReadMode.RGB, device=self.device)[0]
            except RuntimeError:
                result[i] = None
        return result


def iter_tensor_batches(
    paths: Sequence[str | Path],
    pipeline: TensorPipeline,
    batch_size: int = 256,
    workers: int | None = None,
    prefetch: int = 2,
) -> Iterator[TensorBatch]:
    """:class:`TensorBatch` es of ``paths`` in input order; every position appears once, in a
    batch's rows or in its failures. Reading runs in ``workers`` threads (default: every core
    but one), the device stage in a thread of its own on its own CUDA stream, at most
    ``prefetch`` batches ahead of the consumer."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    workers = gpu_decode_workers() if workers is None else max(1, int(workers))
    ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    done = object()

    def stage() -> None:
        try:
            with (
                ThreadPoolExecutor(workers, thread_name_prefix="embedgenre-read") as pool,
                _side_stream(pipeline.device) as stream,
            ):
                futures: list[Future] = []
                nxt = 0
                ahead = batch_size * (prefetch + 1)
                for start in range(0, len(paths), batch_size):
                    while nxt < len(paths) and nxt < start + ahead:
                        futures.append(pool.submit(pipeline.prepare, paths[nxt]))
                        nxt += 1
                    chunk = [f.result() for f in futures[start : start + batch_size]]
                    for k in range(start, min(start + batch_size, len(futures))):
                        futures[k] = None  # type: ignore[call-overload]
                    pixels, rows, failures, thumbs = pipeline.finish(chunk)
                    event = _record(stream)
                    batch = TensorBatch(
                        pixels,
                        [start + r for r in rows],
                        [(start + i, e) for i, e in failures],
                        thumbs if pipeline.thumbnails else None,
                        event,
                    )
                    if not _put(ready, batch, stop):
                        return
            _put(ready, done, stop)
        except BaseException as e:  # handed to the consumer, raised there
            _put(ready, e, stop)

    worker = threading.Thread(target=stage, name="embedgenre-device-stage", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            if item.ready is not None:  # made on the stage's stream: order the model after it
                import torch

                current = torch.cuda.current_stream(pipeline.device)
                current.wait_event(item.ready)
                item.pixels.record_stream(current)
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


@contextlib.contextmanager
def _side_stream(device: str):
    if not device.startswith("cuda"):
        yield None
        return
    import torch

    stream = torch.cuda.Stream(device=device)
    with torch.cuda.stream(stream):
        yield stream


def _record(stream):
    return None if stream is None else stream.record_event()


def batch_for_memory(
    free_bytes: int, per_image_bytes: int, low: int = 32, high: int = 1024, share: float = 0.5
) -> int:
    """The largest power of two between ``low`` and ``high`` whose batch takes at most
    ``share`` of ``free_bytes`` at ``per_image_bytes`` each."""
    fit = int(free_bytes * share) // max(1, int(per_image_bytes))
    size = low
    while size * 2 <= min(fit, high):
        size *= 2
    return size


def device_batch_size(
    forward: Callable[[object], object], transform: ImageTransform, device: str, default: int
) -> int:
    """Posters per batch for a model on ``device``: ``default`` on CPU; on CUDA from the free
    memory and the memory one batch of 8 takes in ``forward`` (activations), plus each
    poster's decoded full-size pixels (up to 2000x3000) and its model input."""
    if not str(device).startswith("cuda"):
        return default
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    probe = torch.zeros((8, 3, transform.out_height, transform.size), device=device)
    forward(probe)
    torch.cuda.synchronize(device)
    per_image = (torch.cuda.max_memory_allocated(device) - base) // 8
    per_image += 2000 * 3000 * 3 * 2 + 3 * transform.out_height * transform.size * 4 * 2
    free, _ = torch.cuda.mem_get_info(device)
    return batch_for_memory(free, per_image)
