"""ImageNet feature extractors from timm: ``timm:<model>[@<weights file>]``.

Features are the pooled pre-classifier output (``num_classes=0``). Well-known names: ResNet-50,
MobileNetV2, DenseNet-201 and BiT-ResNet50 (``resnetv2_50x1_bit``). None ships as a package: weights
come from an explicit file (``timm:resnet50.a1_in1k@/models/resnet50.safetensors``), the embedgenre
cache (``embedgenre models import FILE --as timm:resnet50.a1_in1k``), the Hugging Face cache
(``timm/<model>``), or a hub download when not offline. Preprocessing follows the model's own timm
data config (input size, mean/std, interpolation, crop_pct).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedgenre.encoders.base import Encoder, ImageTransform
from embedgenre.encoders.devices import image_backend, runner_options
from embedgenre.encoders.registry import EncoderSpec, Family, register
from embedgenre.encoders.towers import ImageTowerEncoder
from embedgenre.encoders.weights import (
    Located,
    Search,
    hf_cached_file,
    imported_weights,
    is_offline,
    read_state_dict,
)
from embedgenre.errors import EmbedgenreError, UnknownEncoderError

logger = logging.getLogger(__name__)

# name -> feature dim (known without building the model)
KNOWN = {
    "resnet50.a1_in1k": 2048,
    "mobilenetv2_100.ra_in1k": 1280,
    "densenet201.tv_in1k": 1920,
    "resnetv2_50x1_bit.goog_in21k": 2048,
}
HF_FILES = ("model.safetensors", "pytorch_model.bin")


def parse(name: str) -> tuple[str, str | None]:
    """'timm:MODEL[@PATH]' -> (MODEL, PATH or None); UnknownEncoderError if timm lacks MODEL."""
    import timm

    body = name.split(":", 1)[1]
    model, _, path = body.partition("@")
    arch = model.split(".", 1)[0]
    if not model or not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:6]}*")[:8] if arch else []
        raise UnknownEncoderError(
            f"unknown encoder '{name}': '{arch}' is not a timm architecture"
            + (f" (similar: {', '.join(close)})" if close else "")
            + f"; well-known: {', '.join('timm:' + k for k in KNOWN)}"
        )
    return model, (path or None)


def _hf_repo(model: str) -> str | None:
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(model)
    except Exception:  # a name without a tag, or an unknown tag
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg else None


def build_model(model: str, weights: Path):
    """timm model with num_classes=0 and the weights in ``weights`` (classifier keys dropped).

    Loads strictly: every parameter of the feature extractor must come from the file.
    """
    import timm

    net = timm.create_model(model, pretrained=False, num_classes=0)
    classifier = (net.pretrained_cfg or {}).get("classifier") or ""
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    try:
        sd = read_state_dict(weights)
        sd = {k: v for k, v in sd.items() if not any(k.startswith(h + ".") for h in heads if h)}
        net.load_state_dict(sd, strict=True)
    except EmbedgenreError:  # a checkpoint refused for safety: its own message says why
        raise
    except Exception as e:
        raise EmbedgenreError(
            f"weights file {weights} cannot be loaded into timm model '{model}' ({str(e)[:300]}); "
            "check that the file holds this architecture's weights"
        ) from e
    return net.eval()


def transform_for(net) -> ImageTransform:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=net)
    _, h, w = cfg["input_size"]
    if h != w:
        raise EmbedgenreError(f"non-square timm input size {h}x{w} is not supported")
    return ImageTransform(
        size=int(h),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        crop_pct=float(cfg.get("crop_pct", 1.0)),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode="squash" if cfg.get("crop_mode") == "squash" else "shortest",
    )


class TimmEncoder(ImageTowerEncoder):
    family = "timm"
    _versions = ("torch", "numpy", "pillow", "onnxruntime", "timm")

    def __init__(
        self, name: str, model: str, located: Located, device: str, backend: str, **options
    ) -> None:
        self.model = model
        self._net = build_model(model, located.path)  # its data config gives the transform
        self.dim = int(self._net.num_features)
        self.transform = transform_for(self._net)
        super().__init__(name, located, device, backend, **options)

    def _module(self):
        return self._net

    def _key_parts(self) -> dict:
        return {"model": self.model}


@register
class TimmFamily(Family):
    prefix = "timm"
    modalities = ("image",)
    description = "timm ImageNet CNN features (ResNet, MobileNet, DenseNet, BiT)"
    example = "timm:resnet50.a1_in1k"

    def known_names(self) -> list[str]:
        return [f"timm:{k}" for k in KNOWN]

    def locate(self, name: str) -> tuple[Located | None, Search]:
        model, path = parse(name)
        search = Search(name)
        if path:
            p = Path(path).expanduser()
            return search.first([("local file", str(p), lambda: p)]), search
        candidates = [("cache", "embedgenre cache (models import)", lambda: imported_weights(name))]
        repo = _hf_repo(model)
        if repo:
            candidates.append(
                ("hf cache", f"Hugging Face cache ({repo})", lambda: hf_cached_file(repo, HF_FILES))
            )
        return search.first(candidates), search

    def spec(self, name: str) -> EncoderSpec:
        model, _ = parse(name)
        located, _ = self.locate(name)
        return self.spec_of(
            name, located, KNOWN.get(model), "timm ImageNet features (num_classes=0)"
        )

    def create(self, name: str, device: str, backend: str, **options: Any) -> Encoder:
        model, path = parse(name)
        located, search = self.locate(name)
        repo = _hf_repo(model)
        if located is None and not path and repo and not is_offline():
            located = self._download(repo, search)
        if located is None:
            if path:
                fix = f"check the weights file path {path}"
            else:
                src = f"the Hugging Face repo {repo}" if repo else "its publisher"
                fix = (
                    f"download model.safetensors from {src} and run "
                    f"`embedgenre models import model.safetensors --as {name}`"
                )
            raise search.error(fix, hub=True)
        backend = image_backend(backend, device, name, options)
        return TimmEncoder(name, model, located, device, backend, **runner_options(options))

    def check_import(self, name: str, path: Path, config: Path | None) -> dict[str, Path | bytes]:
        model, explicit = parse(name)
        if explicit:
            raise EmbedgenreError(f"import name '{name}' must not contain a path")
        build_model(model, path)  # raises with the reason if the file does not fit
        return {}

    def _download(self, repo: str, search: Search) -> Located | None:
        search.searched.append(f"hub: {repo}")
        try:
            from huggingface_hub import hf_hub_download

            logger.warning("downloading timm weights from %s", repo)
            for filename in HF_FILES:
                try:
                    return Located("hub", Path(hf_hub_download(repo, filename)))
                except Exception as e:  # try the next file name
                    logger.debug("no %s in %s: %s", filename, repo, e)
        except ImportError:
            pass
        return None
