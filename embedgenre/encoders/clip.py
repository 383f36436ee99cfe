"""CLIP image + text towers through open_clip: ``clip:<arch>@<pretrained tag or checkpoint path>``.

Both towers embed into one space, so a poster can be compared with a text prompt. Examples:
``clip:ViT-B-32@laion2b_s34b_b79k`` (an open_clip tag), ``clip:ViT-B-32@/models/ckpt.bin``.

Where weights are found (see weights.py for the order): an explicit checkpoint path; the
embedgenre cache (``embedgenre models import open_clip_pytorch_model.bin --as clip:ARCH@TAG``);
the Hugging Face cache of the tag's hub repo; a hub download when not offline.

The architecture comes from, in order: ``open_clip_config.json`` beside the checkpoint (the
Hugging Face open_clip layout: ``{"model_cfg": {...}, "preprocess_cfg": {...}}``), then open_clip's
built-in config for ``<arch>``. So any architecture, even one open_clip does not ship, works if its
config JSON travels with the checkpoint; ``models import`` stores it next to the imported file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.encoders import calibration
from embedgenre.encoders.base import Encoder, ImageTransform, package_versions
from embedgenre.encoders.clip_config import (
    CONFIG_FILE,
    HF_FILES,
    KNOWN,
    config_beside,
    looks_like_path,
    parse,
    pretrained_cfg,
    read_config_file,
    resolve_config,
)
from embedgenre.encoders.clip_tokenizer import VOCAB_FILE, ClipBpeTokenizer
from embedgenre.encoders.devices import (
    TorchRunner,
    feature_module,
    image_backend,
    image_key_parts,
    make_image_runner,
    make_runner,
    runner_options,
)
from embedgenre.encoders.onnx_runtime import OnnxRunner, onnx_path, ort_threads
from embedgenre.encoders.registry import EncoderSpec, Family, register
from embedgenre.encoders.weights import (
    Located,
    Search,
    cache_dir,
    file_fingerprint,
    hf_cached_file,
    imported_weights,
    is_offline,
    is_refused_pickle,
    load_error_detail,
    quiet_pickle_protocol,
    slug,
    unsafe_checkpoint_error,
)
from embedgenre.errors import EmbedgenreError
from embedgenre.store import atomic

logger = logging.getLogger(__name__)


class _DropOpenClipLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname


def build_model(arch: str, cfg: dict, weights: Path | None):
    """An open_clip model from ``cfg`` (HF layout), with ``weights`` loaded strictly (CPU, fp32).

    weights None gives a random-initialised model (only for making test checkpoints).
    """
    import open_clip

    # open_clip logs to the root logger that this model starts random: true and expected here
    # (the weights are loaded just below), but alarming to a user, so those records are dropped.
    quiet = _DropOpenClipLogs()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="embedgenre-clip-") as tmp:
            (Path(tmp) / CONFIG_FILE).write_text(json.dumps(cfg))
            model = open_clip.create_model(
                f"local-dir:{tmp}",
                load_weights=False,
                pretrained_text=False,
                pretrained_image=False,
                device="cpu",
            )
            tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp}")
    finally:
        root.removeFilter(quiet)
    if weights is not None:
        try:
            with quiet_pickle_protocol():
                open_clip.load_checkpoint(model, str(weights), strict=True)
        except Exception as e:
            if is_refused_pickle(e):  # torch's restricted unpickler met code or other objects
                raise unsafe_checkpoint_error(weights) from None
            raise EmbedgenreError(
                f"checkpoint {weights} does not fit CLIP architecture '{arch}' "
                f"({load_error_detail(e)}); "
                "import it under the name of the architecture it was trained as"
            ) from e
    return model.eval(), tokenizer


def image_transform(model, cfg: dict) -> ImageTransform:
    pre = dict(cfg.get("preprocess_cfg") or {})
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    from open_clip.transform import PreprocessCfg

    default = PreprocessCfg()
    mode = pre.get("resize_mode", default.resize_mode)
    if mode not in ("shortest", "squash"):
        raise EmbedgenreError(f"CLIP resize_mode '{mode}' is not supported (shortest, squash)")
    return ImageTransform(
        size=int(size),
        mean=tuple(float(v) for v in pre.get("mean", default.mean)),
        std=tuple(float(v) for v in pre.get("std", default.std)),
        crop_pct=1.0,
        interpolation=pre.get("interpolation", default.interpolation),
        resize_mode=mode,
    )


def image_tower(model):
    """torch module: (n, 3, H, W) -> (n, d) CLIP image features (not normalised)."""
    return feature_module(model, lambda m, x: m.encode_image(x))


def text_tower(model):
    """torch module: int64 tokens (n, context) -> (n, d) CLIP text features (not normalised)."""
    return feature_module(model, lambda m, tokens: m.encode_text(tokens))


def plain_bpe(tokenizer) -> bool:
    """True when ``tokenizer`` is open_clip's default CLIP BPE (lower-case cleaning, truncation),
    which :class:`ClipBpeTokenizer` reproduces without torch."""
    return (
        type(tokenizer).__name__ == "SimpleTokenizer"
        and getattr(tokenizer, "reduction_fn", None) is None
        and getattr(getattr(tokenizer, "clean_fn", None), "__name__", "") == "_clean_lower"
        and getattr(tokenizer, "vocab_size", 0) == 49408
    )


class ClipEncoder(Encoder):
    """A CLIP model's two towers, each a runner (ONNX Runtime or torch); build it with
    :func:`full_clip_encoder` (open_clip, exports on first use) or :func:`bundled_clip_encoder`
    (the cached export alone: no torch, no open_clip)."""

    family = "clip"
    modalities = ("image", "text")
    _versions = ("torch", "numpy", "pillow", "onnxruntime", "open_clip_torch")

    def __init__(
        self,
        name: str,
        located: Located,
        device: str,
        *,
        arch: str,
        config_source: str,
        dim: int,
        transform: ImageTransform,
        context_length: int,
        tokenizer_name: str,
        image_runner,
        tokenize,
        text_runner,
    ) -> None:
        self._set_origin(name, located, device, image_runner.backend)
        self.arch = arch
        self.config_source = config_source
        self.dim = int(dim)
        self.transform = transform
        self.context_length = int(context_length)
        self.tokenizer_name = tokenizer_name
        self._image_runner = image_runner
        self._tokenize = tokenize
        self._text_runner = text_runner
        self._adopt_runner(image_runner)
        self.text_backend = text_runner.backend

    def _forward_pixels(self, batch: np.ndarray) -> np.ndarray:
        return self._image_runner(pixels=batch)

    def _forward_texts(self, texts: list[str]) -> np.ndarray:
        return self._text_runner(tokens=self._tokenize(texts))

    def _pixel_tensor_runner(self):
        return getattr(self._image_runner, "tensor", None)

    def _text_description(self) -> dict[str, Any]:
        return {"context_length": self.context_length, "tokenizer": self.tokenizer_name}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["architecture"] = {"arch": self.arch, "config_source": self.config_source}
        d["text_backend"] = self.text_backend
        return d


class _LazyOnnx:
    """An ONNX session opened on its first call (a poster query never opens the text tower)."""

    backend = "onnx"
    variant = "ort"
    precision = "fp32"

    def __init__(
        self, path: Path, threads: int | None, choice: dict, precision: str = "fp32"
    ) -> None:
        self.path, self.threads, self.choice = path, threads, choice
        self.precision = precision
        self._runner = None

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        if self._runner is None:
            self._runner = OnnxRunner(self.path, self.threads)
        return self._runner(**inputs)


# -- the export bundle: what a query needs, written once beside the ONNX files ---------------

BUNDLE_RECIPE = 2  # bump when what a bundle records changes


def _bundle_path(name: str, arch: str, tag: str, located: Located) -> Path:
    """Where the bundle of this checkpoint + config + library versions lives (not read)."""
    beside = config_beside(located.path, arch) if located.path else None
    config_id = (
        hashlib.sha256(beside.read_bytes()).hexdigest()
        if beside is not None
        else f"open_clip built-in {arch}@{tag}"
    )
    parts = {
        "name": name,
        "weights": file_fingerprint(located.path),
        "config": config_id,
        "recipe": BUNDLE_RECIPE,
        **package_versions("torch", "onnx", "open_clip_torch"),
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / slug(name) / f"bundle-{key}.json"


def _write_bundle(
    path: Path, enc: ClipEncoder, image_onnx: Path, text_onnx: Path, key_parts: dict
) -> None:
    folder = path.parent
    vocab = folder / "tokenizer" / VOCAB_FILE
    if not vocab.is_file():
        import open_clip  # heavy (torch); only the first use of an encoder writes a bundle

        atomic.copy_file(Path(open_clip.__file__).parent / VOCAB_FILE, vocab)
    doc = {
        "recipe": BUNDLE_RECIPE,
        "name": enc.name,
        "arch": enc.arch,
        "config_source": enc.config_source,
        "dim": enc.dim,
        "transform": enc.transform.to_dict(),
        "context_length": enc.context_length,
        "tokenizer": {
            "kind": "clip-bpe",
            "name": enc.tokenizer_name,
            "vocab": str(vocab.relative_to(folder)),
        },
        "image_onnx": str(image_onnx.relative_to(folder)),
        "text_onnx": str(text_onnx.relative_to(folder)),
        # what the image tower's export and backend measurement are keyed by, so bulk encoding
        # finds the measured choice without building the model
        "key_parts": json.loads(json.dumps(key_parts, default=str)),
    }
    atomic.write_json(path, doc)
    for old in folder.glob("bundle-*.json"):
        if old != path:
            old.unlink(missing_ok=True)


def bundled_clip_encoder(
    name: str,
    arch: str,
    tag: str,
    located: Located,
    threads: int | None = None,
    backend: str = "onnx",
    precision: str = "fp32",
) -> ClipEncoder | None:
    """The encoder from the cached export bundle alone (ONNX Runtime, NumPy preprocessing, the
    BPE tokenizer above), or None when there is no complete bundle for these weights. With
    ``backend="auto"`` (bulk encoding) only when the backend measured on this CPU chose ONNX
    Runtime; otherwise the model is built and measured (:func:`full_clip_encoder`).
    ``precision="int8"``: the image tower's int8 model, when an index already made it (and
    checked it against fp32 then) beside the export; otherwise None."""
    path = _bundle_path(name, arch, tag, located)
    try:
        doc = json.loads(path.read_text())
        folder = path.parent
        image_onnx, text_onnx = folder / doc["image_onnx"], folder / doc["text_onnx"]
        vocab = folder / doc["tokenizer"]["vocab"]
        if doc.get("recipe") != BUNDLE_RECIPE or not all(
            p.is_file() for p in (image_onnx, text_onnx, vocab)
        ):
            return None
        transform = ImageTransform.from_dict(doc["transform"])
        choice = {"by": "query: ONNX Runtime loads fastest", "bundle": path.name}
        if precision == "int8":
            image_onnx = image_onnx.parent / "int8" / image_onnx.name  # see quantized_runner
            if backend == "auto" or not image_onnx.is_file():
                return None
            choice = {**choice, "precision": "int8"}
        elif precision != "fp32":
            return None
        if backend == "auto":
            measured = calibration.read_calibration(
                calibration.calibration_path(name, doc["key_parts"], ort_threads(threads))
            )
            if measured is None or measured["chosen"] != "onnx":
                return None
            choice = {"by": "cached measurement", **measured, "bundle": path.name}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    context_length = int(doc["context_length"])
    tokenizer: list = []

    def tokenize(texts: list[str]) -> np.ndarray:
        if not tokenizer:  # read the vocabulary only when a text is first encoded
            tokenizer.append(ClipBpeTokenizer(vocab, context_length))
        return tokenizer[0](texts)

    return ClipEncoder(
        name,
        located,
        "cpu",
        arch=doc["arch"],
        config_source=doc["config_source"],
        dim=int(doc["dim"]),
        transform=transform,
        context_length=context_length,
        tokenizer_name=doc["tokenizer"]["name"],
        image_runner=_LazyOnnx(image_onnx, threads, choice, precision),
        tokenize=tokenize,
        text_runner=_LazyOnnx(text_onnx, threads, choice),
    )


def full_clip_encoder(
    name: str,
    arch: str,
    tag: str,
    cfg: dict,
    config_source: str,
    located: Located,
    device: str,
    backend: str,
    threads: int | None = None,
    precision: str = "fp32",
) -> ClipEncoder:
    """The encoder built with open_clip: the image tower on ``backend`` ("auto": measured), the
    text tower on ONNX Runtime on CPU (torch when asked, or on GPU). On CPU it leaves an export
    bundle behind, so later query processes need neither torch nor open_clip."""
    model, tokenizer = build_model(arch, cfg, located.path)
    transform = image_transform(model, cfg)
    context_length = int(getattr(tokenizer, "context_length", 77) or 77)
    key_parts = {"weights": file_fingerprint(located.path), "config": cfg}
    image_runner = make_image_runner(
        name,
        backend,
        device,
        lambda: image_tower(model),
        transform,
        key_parts=key_parts,
        threads=threads,
        precision=precision,
    )
    text_on_onnx = device == "cpu" and backend != "torch"
    if text_on_onnx:

        def build_text():
            import torch

            example = (torch.zeros(2, context_length, dtype=torch.int64),)
            return text_tower(model), example, ["tokens"], {"tokens": {0: "batch"}}

        text_runner = make_runner(
            name, "onnx", device, build_text, key_parts, threads=threads, part="text"
        )
    else:
        text_runner = TorchRunner(text_tower(model), device, ["tokens"])
    light = plain_bpe(tokenizer)

    def tokenize(texts: list[str]) -> np.ndarray:
        return tokenizer(texts).numpy()

    enc = ClipEncoder(
        name,
        located,
        device,
        arch=arch,
        config_source=config_source,
        dim=int(cfg["model_cfg"]["embed_dim"]),
        transform=transform,
        context_length=context_length,
        tokenizer_name=type(tokenizer).__name__,
        image_runner=image_runner,
        tokenize=tokenize,
        text_runner=text_runner,
    )
    image_onnx = onnx_path(name, image_key_parts(key_parts, transform))
    if text_on_onnx and light and precision == "fp32" and image_onnx.is_file():
        try:
            _write_bundle(
                _bundle_path(name, arch, tag, located),
                enc,
                image_onnx,
                text_runner.path,
                image_key_parts(key_parts, transform),
            )
        except OSError as e:  # a read-only cache: queries then build the model each time
            logger.warning("cannot write the CLIP export bundle for %s (%s)", name, e)
    return enc


@register
class ClipFamily(Family):
    prefix = "clip"
    description = "open_clip CLIP, image and text towers in one space"
    example = "clip:ViT-B-32@laion2b_s34b_b79k"

    def known_names(self) -> list[str]:
        return list(KNOWN)

    def locate(self, name: str) -> tuple[Located | None, Search]:
        arch, tag = parse(name)
        search = Search(name)
        if looks_like_path(tag):
            path = Path(tag).expanduser()
            return search.first([("local file", str(path), lambda: path)]), search

        def candidates():
            yield ("cache", "embedgenre cache (models import)", lambda: imported_weights(name))
            # open_clip's tag table is read only when the cache has nothing (it imports torch)
            pre = pretrained_cfg(arch, tag)
            repo = (pre.get("hf_hub") or "").strip("/")
            if repo:
                yield (
                    "hf cache",
                    f"Hugging Face cache ({repo})",
                    lambda: hf_cached_file(repo, HF_FILES),
                )
            if pre.get("url"):
                legacy = Path.home() / ".cache" / "clip" / os.path.basename(pre["url"])
                yield ("hf cache", f"open_clip cache ({legacy})", lambda: legacy)

        return search.first(candidates()), search

    def spec(self, name: str) -> EncoderSpec:
        arch, tag = parse(name)
        located, _ = self.locate(name)
        dim = None
        try:
            cfg, _ = resolve_config(arch, tag, located.path if located else None)
            dim = int(cfg["model_cfg"]["embed_dim"])
        except EmbedgenreError:
            pass
        return EncoderSpec(
            name=name,
            family="clip",
            modalities=("image", "text"),
            dim=dim,
            available=located is not None,
            source=located.source if located else None,
            location=str(located.path) if located else None,
            description="open_clip CLIP (image + text, one space)",
        )

    def create(self, name: str, device: str, backend: str, **options: Any) -> Encoder:
        arch, tag = parse(name)
        located, search = self.locate(name)
        if located is None and not looks_like_path(tag) and not is_offline():
            located = self._download(arch, tag, search)
        if located is None:
            pre = pretrained_cfg(arch, tag)
            if looks_like_path(tag):
                fix = f"check the checkpoint path {tag}"
            else:
                where = (
                    f"the Hugging Face repo {pre['hf_hub'].strip('/')}"
                    if pre.get("hf_hub")
                    else ("the open_clip release for this tag")
                )
                fix = (
                    f"download open_clip_pytorch_model.bin from {where} and run "
                    f"`embedgenre models import open_clip_pytorch_model.bin --as {name}`"
                )
                if not pre:
                    fix += f" ('{tag}' is not an open_clip tag of {arch}; a custom name is fine)"
            raise search.error(fix, hub=True)
        backend = image_backend(backend, device, name, options)
        threads, precision = runner_options(options).values()
        if device == "cpu" and backend in ("onnx", "auto") and precision in ("fp32", "int8"):
            enc = bundled_clip_encoder(
                name, arch, tag, located, threads=threads, backend=backend, precision=precision
            )
            if enc is not None:
                return enc
        cfg, config_source = resolve_config(arch, tag, located.path)
        return full_clip_encoder(
            name, arch, tag, cfg, config_source, located, device, backend, threads, precision
        )

    def check_import(self, name: str, path: Path, config: Path | None) -> dict[str, Path | bytes]:
        arch, tag = parse(name)
        if looks_like_path(tag):
            raise EmbedgenreError(f"import name '{name}' must not contain a path; use a tag")
        if path.is_dir():
            raise EmbedgenreError(f"{path} is a directory; import the checkpoint file inside it")
        if config is not None:
            cfg, _ = read_config_file(config), str(config)
        else:
            cfg, _ = resolve_config(arch, tag, path)
        build_model(arch, cfg, path)  # strict load: raises with the reason if it does not fit
        return {CONFIG_FILE: (json.dumps(cfg, indent=2) + "\n").encode()}

    def _download(self, arch: str, tag: str, search: Search) -> Located | None:
        pre = pretrained_cfg(arch, tag)
        if not pre:
            return None
        search.searched.append(f"hub: open_clip tag {arch}@{tag}")
        try:
            from open_clip.pretrained import download_pretrained

            logger.warning("downloading CLIP weights %s@%s", arch, tag)
            return Located("hub", Path(download_pretrained(pre)))
        except Exception as e:
            logger.warning("download of %s@%s failed: %s", arch, tag, e)
            return None
