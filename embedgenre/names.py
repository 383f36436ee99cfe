"""The names the library, the CLI and the reports share, defined once.

- :data:`METHODS`: how a head predicts (what ``embedgenre train --method`` takes);
  :data:`TRAINABLE`: the ones that learn from labels (zero-shot needs none).
- :data:`SET_MODALITIES`: what an embedding set embeds (a poster image or a plot text).
- :data:`HEAD_MODALITIES`: what a head scores (``--modality``): one set, or ``both`` fused.
- :data:`FUSIONS`: how ``both`` combines them.
- :data:`EVAL_MODALITIES`: the rows of an evaluation report.
- :data:`BY_CHOICES`: what a similar-movie search compares (``--by``; ``by`` on the HTTP API).

Each vocabulary is declared once, as a ``Literal`` type (:data:`MethodName`, :data:`SetModality`,
:data:`HeadModality`, :data:`FusionName`, :data:`SearchBy`); the tuples are read from it, the
service's models use the types and the CLI's choices are made from the tuples.
- :func:`encoder_name_path`: the file or folder an encoder name points at, if any.
"""

from __future__ import annotations

from typing import Literal, get_args

MethodName = Literal["zeroshot", "knn", "mlknn", "linear", "mlp"]
SetModality = Literal["poster", "plot"]
HeadModality = Literal["poster", "plot", "both"]
FusionName = Literal["early", "late"]
SearchBy = Literal["poster", "plot", "both"]

METHODS: tuple[str, ...] = get_args(MethodName)
TRAINABLE: tuple[str, ...] = tuple(m for m in METHODS if m != "zeroshot")
SET_MODALITIES: tuple[str, ...] = get_args(SetModality)
HEAD_MODALITIES: tuple[str, ...] = get_args(HeadModality)
FUSIONS: tuple[str, ...] = get_args(FusionName)
BY_CHOICES: tuple[str, ...] = get_args(SearchBy)
EVAL_MODALITIES: tuple[str, ...] = ("poster", "plot", "early_fusion", "late_fusion")

# Encoder families whose ``@`` part is always a weights file (``cnn:efficientnet-lite0@/w.pth``).
_PATH_TAG_FAMILIES = ("cnn", "timm")
_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".onnx")


def encoder_name_path(name: str) -> str | None:
    """The local file or folder an encoder name loads its weights from, or None for a registry
    name (weights found by name: packaged, imported, or in a model cache).

    ``clip:ViT-B-32@/models/ckpt.bin``, ``timm:resnet50@w.safetensors`` and ``st:~/my-model`` name
    paths; ``clip:ViT-B-32@laion2b_s34b_b79k`` and ``st:BAAI/bge-small-en`` (a hub id) do not.
    """
    family, _, body = str(name).partition(":")
    model, at, tag = body.partition("@")
    if at:
        if (
            family in _PATH_TAG_FAMILIES
            or any(c in tag for c in "/\\")
            or tag.startswith(("~", "."))
            or tag.lower().endswith(_CHECKPOINT_SUFFIXES)
        ):
            return tag
        return None
    if model.startswith(("/", "~", ".")) or "\\" in model:
        return model
    return None
