"""Reading poster files into RGB images, with one clear error per kind of bad file.

``load_image(path)`` returns a loaded RGB ``PIL.Image.Image`` or raises ``PosterError`` naming the
file and the reason: missing, zero bytes, not an image, truncated/corrupt, or larger than Pillow's
decompression-bomb limit. CMYK, grayscale and palette images are converted to RGB; images with
transparency (RGBA, LA, P with a transparent colour) are composited on white.

``draft_size`` lets decoding skip work: a JPEG decoder scales by 1/2, 1/4 or 1/8 while keeping both
sides at least that large, which is much cheaper than decoding full size and resizing afterwards.
Formats that can only be decoded at full size (PNG, WebP, GIF, BMP, TIFF) are shrunk right after
decoding by a whole factor that keeps both sides at least twice ``draft_size``, so nothing later
holds a full-size copy (an ordinary ~1000 px poster is left as it is).

``open_image_bytes`` reads only the header of an upload and says what decoding it will cost
(:attr:`OpenedImage.decode_bytes`), so a service can refuse or schedule the work before doing it.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from embedgenre.errors import NotAnImageError, PosterError, TooManyPixelsError

logger = logging.getLogger(__name__)

# Image.open checks the pixel count and may warn; catching that warning changes process-wide
# filters, so opens are serialised (opening only parses the header: the lock is held briefly).
_OPEN_LOCK = threading.Lock()

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Bytes per pixel Pillow holds for an image of these modes; every other mode takes 4.
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Modes Image.reduce cannot shrink, and what they are converted to first (at full size).
_BEFORE_SHRINK = {"1": "L", "P": "RGBA"}
SHRINK_GAP = 2  # images are shrunk to no less than this many times the size the encoder needs

MAX_POSTER_BYTES = 64 * 1024 * 1024  # a poster file larger than this is refused unread
THUMB_HEIGHT = 180  # px of the thumbnails stored in an index (about 120 x 180)

# The first bytes of the image formats Pillow reads that posters come in.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\0", b"MM\0*")


def check_poster_file(path: str | Path) -> int:
    """The size of ``path`` in bytes if it is a regular image file under the size cap.

    Checked before anything reads the file: a FIFO, a device (a link to ``/dev/zero``), a
    directory or a huge sparse file would hang or exhaust whoever reads it. The first bytes must
    be an image signature, so nothing but images is ever hashed or stored.
    Raises PosterError naming the file and the reason.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PosterError(f"poster {path}: file not found; check the path in the catalog") from None
    except OSError as e:
        raise PosterError(f"poster {path}: cannot be read ({e.strerror or e})") from e
    if stat.S_ISDIR(st.st_mode):
        raise PosterError(f"poster {path}: is a directory, expected an image file")
    if not stat.S_ISREG(st.st_mode):
        raise PosterError(
            f"poster {path}: not a regular file (a pipe, socket or device); give an image file"
        )
    if st.st_size == 0:
        raise PosterError(f"poster {path}: file is empty (0 bytes); re-download it")
    if st.st_size > MAX_POSTER_BYTES:
        raise PosterError(
            f"poster {path}: {st.st_size / 2**20:.0f} MB is over the {MAX_POSTER_BYTES >> 20} MB "
            "limit for a poster; resize it"
        )
    try:
        with open_regular(path) as f:
            head = f.read(16)
    except OSError as e:
        raise PosterError(f"poster {path}: cannot be read ({e.strerror or e})") from e
    if not has_image_signature(head):
        raise NotAnImageError(
            f"poster {path}: not an image (no JPEG, PNG, WebP, GIF, BMP or TIFF signature)"
        )
    return st.st_size


def has_image_signature(head: bytes) -> bool:
    """True when ``head`` (a file's first 16 bytes or more) starts like JPEG, PNG, WebP, GIF,
    BMP or TIFF: content is sniffed, never trusted from a name or a declared type."""
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def decode_image_bytes(
    data: bytes,
    name: str = "upload",
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
    max_decode_bytes: int | None = None,
) -> Image.Image:
    """An image received in memory (an upload) decoded into a loaded RGB image.

    The signature is sniffed first and the pixel count read from the header is checked against
    ``max_pixels`` (and Pillow's bomb limit) before anything is decoded; see
    :func:`open_image_bytes` for ``max_decode_bytes``. ``name`` only labels messages.
    Raises PosterError naming the reason.
    """
    return open_image_bytes(data, name, max_pixels, draft_size, max_decode_bytes).decode()


@dataclass
class OpenedImage:
    """An image whose header is read and nothing else: what decoding it will produce and cost.

    ``size`` is (width, height) as decoded (a JPEG already set to its reduced scale);
    ``decode_bytes`` is an estimate of the most bytes of pixels held at once while decoding,
    shrinking and converting it to RGB.
    """

    image: Image.Image
    label: str
    draft_size: tuple[int, int] | None
    upload: bool

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def decode_bytes(self) -> int:
        w, h = self.size
        mode = self.image.mode
        full = w * h * _STORED_BYTES.get(mode, 4)
        if mode in _BEFORE_SHRINK:
            full += w * h * _STORED_BYTES.get(_BEFORE_SHRINK[mode], 4)
        f = shrink_factor(self.size, self.draft_size)
        # the shrunk image, its RGB conversion and an alpha composite's working copies
        return full + 3 * (w // f) * (h // f) * 4

    def decode(self) -> Image.Image:
        """Decode, shrink to what the encoder needs and convert to RGB (PosterError if bad)."""
        with _reading(self.label, self.upload):
            img = self.image
            img.load()
            return to_rgb(shrink(img, self.draft_size))


def open_image_bytes(
    data: bytes,
    name: str = "upload",
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
    max_decode_bytes: int | None = None,
) -> OpenedImage:
    """The header of an upload, checked, with nothing decoded yet.

    max_pixels: width x height allowed in the header. draft_size: the (w, h) the encoder needs;
    a JPEG is set to decode at the smallest scale that keeps both sides at least this large.
    max_decode_bytes: refuse an image whose decoding would hold more bytes of pixels than this
    (:attr:`OpenedImage.decode_bytes`): a JPEG is cheap to reduce, a huge PNG or a 16-bit one is
    not. Raises PosterError naming the reason.
    """
    if not data:
        raise PosterError(f"poster {name}: empty (0 bytes); send an image file")
    if not has_image_signature(data[:16]):
        raise NotAnImageError(
            f"poster {name}: not an image (no JPEG, PNG, WebP, GIF, BMP or TIFF signature)"
        )
    opened = _open(io.BytesIO(data), name, draft_size, max_pixels, upload=True)
    cost = opened.decode_bytes
    if max_decode_bytes is not None and cost > max_decode_bytes:
        img = opened.image
        w, h = img.size
        raise TooManyPixelsError(
            f"poster {name}: a {w}x{h} {img.format or 'image'} of mode {img.mode} takes "
            f"{cost / 2**20:.0f} MB to decode, over the {max_decode_bytes / 2**20:.0f} MB limit "
            "per image (too many pixels for a format that cannot be decoded at a reduced size); "
            "resize the poster or send it as an 8-bit JPEG (posters need no more than ~1000 px "
            "a side)"
        )
    return opened


def open_regular(path: str | Path):
    """Open ``path`` for reading without blocking on a FIFO; refuse anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def thumbnail_jpeg(img: Image.Image, height: int = THUMB_HEIGHT) -> bytes:
    """``img`` scaled to ``height`` px (never up) as JPEG bytes, without any metadata."""
    img = to_rgb(img)
    if img.height > height:
        # a box filter: as sharp as bilinear at these sizes, and cheaper (decode workers make
        # one thumbnail per poster while the model runs)
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.BOX)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def load_image(path: str | Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Read ``path`` into a loaded RGB image.

    draft_size: (width, height) in pixels; a JPEG larger than this may be decoded at a reduced
    scale (never below this size). None decodes at full size.
    Raises PosterError naming the file and what is wrong with it.
    """
    path = Path(path)
    check_poster_file(path)
    return _decode(path, path, draft_size)


def _decode(
    source,
    label,
    draft_size: tuple[int, int] | None,
    max_pixels: int | None = None,
    upload: bool = False,
) -> Image.Image:
    """Open (header only), check the pixel count, decode, shrink and convert to RGB; PosterError
    names ``label`` and the reason (files get advice on re-downloading, uploads do not)."""
    return _open(source, label, draft_size, max_pixels, upload).decode()


def _open(
    source,
    label,
    draft_size: tuple[int, int] | None,
    max_pixels: int | None = None,
    upload: bool = False,
) -> OpenedImage:
    """Read the header, check the pixel count and set a JPEG's reduced decoding scale."""
    with _reading(label, upload):
        img = _open_checked(source, label)
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise TooManyPixelsError(
                f"poster {label}: {width}x{height} = {width * height:,} pixels is over the "
                f"{max_pixels:,} pixel limit; resize the poster (posters need no more than "
                "~1000 px a side)"
            )
        if draft_size is not None and img.format == "JPEG":
            img.draft(None, (int(draft_size[0]), int(draft_size[1])))
    return OpenedImage(img, label, draft_size, upload)


@contextmanager
def _reading(label, upload: bool) -> Iterator[None]:
    """Pillow's exceptions while opening or decoding, as PosterError naming ``label``."""
    try:
        yield
    except PosterError:
        raise
    except UnidentifiedImageError:
        why = "" if upload else " (wrong extension or a saved web page?)"
        raise NotAnImageError(f"poster {label}: not an image Pillow can read{why}") from None
    except Image.DecompressionBombError as e:
        raise TooManyPixelsError(_bomb_message(label, str(e))) from None
    except (OSError, SyntaxError, ValueError) as e:
        fix = "; send the whole file" if upload else "; re-download it"
        raise PosterError(f"poster {label}: truncated or corrupt image ({e}){fix}") from e


def shrink_factor(size: tuple[int, int], draft_size: tuple[int, int] | None) -> int:
    """The whole factor an image of ``size`` may be shrunk by while both sides stay at least
    SHRINK_GAP times ``draft_size`` (1: keep it as it is)."""
    if draft_size is None:
        return 1
    w, h = size
    dw, dh = (max(1, int(v) * SHRINK_GAP) for v in draft_size)
    return max(1, min(w // dw, h // dh))


def shrink(img: Image.Image, draft_size: tuple[int, int] | None) -> Image.Image:
    """A loaded ``img`` shrunk by :func:`shrink_factor` with a box filter (averaging each
    factor x factor block), in its own mode; ``img`` itself when there is nothing to gain."""
    f = shrink_factor(img.size, draft_size)
    if f < 2:
        return img
    if img.mode == "P":  # a palette cannot be averaged: its colours can
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    if img.mode in _WIDE_GREY[:4]:  # 16-bit: no reduce(), but resize keeps the mode
        w, h = img.size
        return img.resize((w // f, h // f), Image.Resampling.BOX)
    return img.reduce(f)


def _open_checked(source, label) -> Image.Image:
    """Image.open (of a path or a file object) with the decompression-bomb warning turned into
    PosterError; ``label`` names the poster in messages."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(source)
        except Image.DecompressionBombWarning as e:
            raise TooManyPixelsError(_bomb_message(label, str(e))) from None


def _bomb_message(path, detail: str) -> str:
    return (
        f"poster {path}: too many pixels, refused as a possible decompression bomb ({detail}); "
        "resize the poster (posters need no more than ~1000 px a side)"
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent pixels become white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in _WIDE_GREY:
        # 16/32-bit grayscale: scale to 8 bits before converting (Pillow would clip), a band
        # of rows at a time so no full-size wide copy is ever made
        img = _grey_to_8bit(img)
    return img.convert("RGB")


def _grey_to_8bit(img: Image.Image, rows: int = 256) -> Image.Image:
    """A 16/32-bit grayscale image scaled so its brightest pixel becomes 255, as mode L."""
    top = float(img.getextrema()[1]) or 1.0
    w, h = img.size
    out = np.empty((h, w), dtype=np.uint8)
    for y in range(0, h, rows):
        band = np.asarray(img.crop((0, y, w, min(h, y + rows))), dtype=np.float64)
        out[y : y + rows] = (band * (255.0 / top)).astype(np.uint8)
    return Image.fromarray(out)
