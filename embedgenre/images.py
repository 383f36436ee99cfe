"""Reading poster files into RGB images, with one clear error per kind of bad file.

``load_image(path)`` returns a loaded RGB ``PIL.Image.Image`` or raises ``PosterError`` naming the
file and the reason: missing, zero bytes, not an image, truncated/corrupt, or larger than Pillow's
decompression-bomb limit. CMYK, grayscale and palette images are converted to RGB; images with
transparency (RGBA, LA, P with a transparent colour) are composited on white.

``draft_size`` lets JPEG decoding skip work: the decoder scales by 1/2, 1/4 or 1/8 while keeping both
sides at least that large, which is much cheaper than decoding full size and resizing afterwards.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from embedgenre.errors import PosterError

logger = logging.getLogger(__name__)

# Image.open checks the pixel count and may warn; catching that warning changes process-wide
# filters, so opens are serialised (opening only parses the header: the lock is held briefly).
_OPEN_LOCK = threading.Lock()

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_image(path: str | Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Read ``path`` into a loaded RGB image.

    draft_size: (width, height) in pixels; a JPEG larger than this may be decoded at a reduced
    scale (never below this size). None decodes at full size.
    Raises PosterError naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PosterError(f"poster {path}: file not found; check the path in the catalog") from None
    except OSError as e:
        raise PosterError(f"poster {path}: cannot be read ({e})") from e
    if path.is_dir():
        raise PosterError(f"poster {path}: is a directory, expected an image file")
    if size == 0:
        raise PosterError(f"poster {path}: file is empty (0 bytes); re-download it")

    try:
        img = _open_checked(path)
        if draft_size is not None and img.format == "JPEG":
            img.draft(None, (int(draft_size[0]), int(draft_size[1])))
        img.load()
    except PosterError:
        raise
    except UnidentifiedImageError:
        raise PosterError(
            f"poster {path}: not an image Pillow can read (wrong extension or a saved web page?)"
        ) from None
    except Image.DecompressionBombError as e:
        raise PosterError(_bomb_message(path, str(e))) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PosterError(f"poster {path}: truncated or corrupt image ({e}); re-download it") from e
    return to_rgb(img)


def _open_checked(path: Path) -> Image.Image:
    """Image.open with the decompression-bomb warning turned into PosterError."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombWarning as e:
            raise PosterError(_bomb_message(path, str(e))) from None


def _bomb_message(path: Path, detail: str) -> str:
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
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits before converting (Pillow would clip).
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), mode="L")
    return img.convert("RGB")
