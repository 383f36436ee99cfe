"""Which CLIP a ``clip:<arch>@<tag or checkpoint>`` name means: the name parsed, and the
open_clip architecture config found for it (beside the checkpoint, else open_clip's built-in one,
checked against each other), with the preprocessing of the pretrained tag."""

from __future__ import annotations

import json
import os
from pathlib import Path

from embedgenre.errors import EmbedgenreError, UnknownEncoderError

CONFIG_FILE = "open_clip_config.json"
KNOWN = [
    "clip:ViT-B-32@laion2b_s34b_b79k",
    "clip:ViT-B-32@openai",
    "clip:ViT-B-16@laion2b_s34b_b88k",
    "clip:ViT-L-14@laion2b_s32b_b82k",
]
HF_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
)


def parse(name: str) -> tuple[str, str]:
    """'clip:ARCH@TAG' -> (ARCH, TAG); UnknownEncoderError with the expected form otherwise."""
    body = name.split(":", 1)[1]
    arch, sep, tag = body.partition("@")
    if not sep or not arch or not tag:
        raise UnknownEncoderError(
            f"unknown encoder '{name}': CLIP names are clip:<arch>@<pretrained tag or checkpoint "
            "path>, e.g. clip:ViT-B-32@laion2b_s34b_b79k"
        )
    return arch, tag


def looks_like_path(tag: str) -> bool:
    return "/" in tag or os.sep in tag or tag.endswith((".bin", ".pt", ".pth", ".safetensors"))


def pretrained_cfg(arch: str, tag: str) -> dict:
    from open_clip.pretrained import get_pretrained_cfg

    return dict(get_pretrained_cfg(arch, tag) or {})


def builtin_config(arch: str) -> dict | None:
    import open_clip

    return open_clip.get_model_config(arch)


def read_config_file(path: Path) -> dict:
    """Read an open_clip config JSON: the HF layout {"model_cfg", "preprocess_cfg"} or a bare
    model config (open_clip's model_configs/*.json); returns the HF layout."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise EmbedgenreError(f"open_clip config {path} cannot be read as JSON ({e})") from e
    if "model_cfg" not in cfg:
        cfg = {"model_cfg": cfg, "preprocess_cfg": {}}
    model_cfg = cfg["model_cfg"]
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(
        model_cfg
    ):
        raise EmbedgenreError(
            f"open_clip config {path} lacks embed_dim/vision_cfg/text_cfg; expected the "
            "open_clip_config.json of an open_clip model"
        )
    return cfg


def config_beside(weights: Path, arch: str) -> Path | None:
    """An open_clip config that travels with a checkpoint: open_clip_config.json or <arch>.json."""
    folder = weights if weights.is_dir() else weights.parent
    for candidate in (folder / CONFIG_FILE, folder / f"{arch}.json"):
        if candidate.is_file():
            return candidate
    return None


def arch_shape(model_cfg: dict) -> tuple:
    """The numbers that tell two CLIP architectures apart."""
    v, t = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    return (
        model_cfg.get("embed_dim"),
        v.get("image_size"),
        v.get("layers"),
        v.get("width"),
        v.get("patch_size"),
        v.get("timm_model_name"),
        t.get("layers"),
        t.get("width"),
        t.get("hf_model_name"),
    )


def resolve_config(arch: str, tag: str, weights: Path | None) -> tuple[dict, str]:
    """(HF-layout config, where it came from) for ``arch``; EmbedgenreError if none is found."""
    builtin = builtin_config(arch)
    if weights is not None:
        found = config_beside(weights, arch)
        if found is not None:
            cfg = read_config_file(found)
            if builtin is not None and arch_shape(cfg["model_cfg"]) != arch_shape(builtin):
                raise EmbedgenreError(
                    f"{found} describes a different architecture than open_clip's '{arch}' "
                    f"({arch_shape(cfg['model_cfg'])} vs {arch_shape(builtin)}); name the encoder after "
                    "the architecture the checkpoint was trained as"
                )
            return cfg, str(found)
    if builtin is None:
        import open_clip

        beside = f" or {CONFIG_FILE} beside {weights}" if weights else ""
        raise EmbedgenreError(
            f"CLIP architecture '{arch}' is not an open_clip built-in config{beside}; "
            f"known archs include {', '.join(open_clip.list_models()[:12])}, ... Fix: put the "
            f"model's {CONFIG_FILE} next to the checkpoint, or `embedgenre models import CKPT "
            f"--as clip:{arch}@{tag} --config CONFIG.json`"
        )
    pre = {
        k: v
        for k, v in pretrained_cfg(arch, tag).items()
        if k in ("mean", "std", "interpolation", "resize_mode")
    }
    return {"model_cfg": builtin, "preprocess_cfg": pre}, f"open_clip built-in {arch}"
