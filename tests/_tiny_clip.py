"""A tiny random-initialised open_clip model saved like a real download, for tests.

``make_tiny_clip_checkpoint(tmp_dir)`` writes ``open_clip_pytorch_model.bin`` and the
``open_clip_config.json`` that describes its architecture (a 2-layer 32-wide ViT on 32x32 images and
a 1-layer text transformer, 32-d embeddings), and returns the encoder name that loads it by path.
``imported_tiny_clip(tmp_dir)`` also imports it into the cache under a tag of its own and returns
that registry name, the way an index must name it. The weights are random: use it to test loading
and shapes, never semantics.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

TINY_ARCH = "TinyCLIP-test"
TINY_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def make_tiny_clip_checkpoint(tmp_dir: str | Path, seed: int = 0) -> tuple[str, Path]:
    """Write a tiny CLIP checkpoint + config into ``tmp_dir``; return (encoder name, checkpoint)."""
    import torch

    from embedgenre.encoders.clip import build_model

    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, _ = build_model(TINY_ARCH, TINY_CONFIG, None)
    path = tmp_dir / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    (tmp_dir / "open_clip_config.json").write_text(json.dumps(TINY_CONFIG, indent=2))
    return f"clip:{TINY_ARCH}@{path}", path


def imported_tiny_clip(
    tmp_dir: str | Path, seed: int = 0, tag: str | None = None
) -> tuple[str, Path]:
    """A tiny CLIP checkpoint imported into the current cache as ``clip:TinyCLIP-test@<tag>`` (a
    tag of its own unless given); returns (registry name, checkpoint)."""
    from embedgenre.encoders.registry import import_weights

    _, path = make_tiny_clip_checkpoint(tmp_dir, seed)
    name = f"clip:{TINY_ARCH}@{tag or 't' + uuid.uuid4().hex[:12]}"
    import_weights(path, name)
    return name, path
