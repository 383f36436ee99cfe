"""Poster pixels for the scratch CNN baseline: decoded, shrunk to 64x96, uint8 (n, 3, H, W)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from embedgenre.images import load_image

logger = logging.getLogger(__name__)

#: (width, height) posters are shrunk to; about the 2:3 poster shape.
DEFAULT_SIZE: tuple[int, int] = (64, 96)


def load_poster_pixels(
    paths: Sequence[str | Path | None],
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and shrink posters: (pixels uint8 (n, 3, H, W), ok bool (n,)).

    A missing or unreadable poster leaves a zero image and ``ok = False`` (logged once per file).
    ``progress(i)`` is called after each poster.
    """
    w, h = size
    out = np.zeros((len(paths), 3, h, w), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        if p is not None:
            try:
                img = load_image(p).resize((w, h), Image.BILINEAR)
                out[i] = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
                ok[i] = True
            except Exception as e:  # noqa: BLE001 - report and go on: one bad poster is not fatal
                logger.warning("scratch CNN: cannot read poster %s (%s); using a blank image", p, e)
        if progress is not None:
            progress(i + 1)
    return out, ok
