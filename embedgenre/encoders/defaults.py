"""Which encoders a new index gets when none is named: the best whose weights are here.

Kept apart from the registry (which only knows names and families) because the choice depends on
particular families, e.g. how many plots the catalog-fitted text encoder needs.
"""

from __future__ import annotations

import logging

from embedgenre.encoders.hybrid import MIN_PLOTS
from embedgenre.encoders.registry import encoder_spec

logger = logging.getLogger(__name__)

DEFAULT_CLIP = "clip:ViT-B-32@laion2b_s34b_b79k"
FALLBACK_IMAGE = "cnn:efficientnet-lite0"
DEFAULT_TEXT = "hybrid:all-MiniLM-L6-v2"
SENTENCE_TEXT = "st:all-MiniLM-L6-v2"  # the default for catalogs with few plots


def default_image_encoder_name() -> str:
    """CLIP ViT-B/32 (LAION-2B) when its weights are here, else the packaged EfficientNet-Lite0.

    When CLIP is missing the choice is a one-line warning, once per process (``embedgenre
    models`` and the encoders reference say how to add CLIP); the details are logged at debug.
    """
    spec = encoder_spec(DEFAULT_CLIP)
    if spec.available:
        logger.info("default image encoder: %s (weights from %s)", DEFAULT_CLIP, spec.source)
        return DEFAULT_CLIP
    if not _told_clip_missing:
        _told_clip_missing.append(True)
        logger.warning("CLIP absent: posters use %s (`embedgenre models`)", FALLBACK_IMAGE)
    logger.debug(
        "CLIP weights for %s are not on this machine: using %s (ImageNet CNN features, weaker for "
        "genres; no zero-shot). To use CLIP, download open_clip_pytorch_model.bin from the Hugging "
        "Face repo laion/CLIP-ViT-B-32-laion2B-s34B-b79K and import it as %s",
        DEFAULT_CLIP,
        FALLBACK_IMAGE,
        DEFAULT_CLIP,
    )
    return FALLBACK_IMAGE


_told_clip_missing: list[bool] = []  # the missing-CLIP warning is given once per process


def default_text_encoder_name(plots: int | None = None) -> str:
    """The packaged sentence encoder all-MiniLM-L6-v2 with a lexical half fitted on the
    catalog's plots (``hybrid:``): on the shared posters it scores higher than MiniLM alone
    (benchmarks/results/quality.md). A catalog with fewer than ``MIN_PLOTS`` plots (when
    ``plots`` is given) gets plain MiniLM: too few plots to fit the lexical half on."""
    if plots is not None and plots < MIN_PLOTS:
        logger.warning(
            "the catalog has %d plot(s), fewer than the %d needed to fit the lexical half of "
            "%s: plots use %s",
            plots,
            MIN_PLOTS,
            DEFAULT_TEXT,
            SENTENCE_TEXT,
        )
        return SENTENCE_TEXT
    return DEFAULT_TEXT
