"""Run a PyTorch encoder through ONNX Runtime on CPU.

Whether this beats eager PyTorch depends on the model and the CPU (``calibration.py`` measures
it). The PyTorch module stays the reference: it is exported once to ONNX and the file is cached in
``<cache>/onnx/<slug>/[<part>/]<key>.onnx``. The key hashes the encoder name, the weights fingerprint,
the torch/onnx versions and the export recipe, so a change to any of them exports again.
Export is atomic (temporary file, then rename). Threads: ``EMBEDGENRE_ORT_THREADS`` or the
``threads`` argument, default all available cores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.encoders.base import package_versions
from embedgenre.encoders.cpu import available_cores
from embedgenre.encoders.weights import cache_dir, slug
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

EXPORT_RECIPE = 1  # bump when the export code changes what it writes
OPSET = 17


def ort_threads(threads: int | None = None) -> int:
    """Intra-op threads: the argument, else $EMBEDGENRE_ORT_THREADS, else all available cores."""
    if threads is None:
        env = os.environ.get("EMBEDGENRE_ORT_THREADS", "").strip()
        threads = int(env) if env else available_cores()
    return max(1, int(threads))


def onnx_path(name: str, key_parts: dict[str, Any], part: str = "") -> Path:
    """Cache file for encoder ``name`` exported under ``key_parts`` (weights fingerprint, ...).

    part: a sub-model (e.g. "text" for a second tower) in a folder of its own."""
    parts = dict(key_parts)
    parts.update(name=name, recipe=EXPORT_RECIPE, opset=OPSET)
    parts.update(package_versions("torch", "onnx"))
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = cache_dir() / "onnx" / slug(name)
    return (folder / part if part else folder) / f"{key}.onnx"


def export_onnx(
    path: Path,
    module: Any,
    example_inputs: tuple,
    input_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """torch.onnx.export ``module`` (eval mode, fp32, CPU) to ``path`` atomically.

    Older exports for the same encoder (other keys) are removed.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = str(atomic.new_temp(path.parent, ".export-", ".onnx"))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        # The fused attention fast path has no ONNX form; export the plain ops.
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example_inputs,
                tmp_name,
                dynamo=False,
                input_names=input_names,
                output_names=["embedding"],
                dynamic_axes={**dynamic_axes, "embedding": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        atomic.publish(tmp_name, path)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    for old in path.parent.glob("*.onnx"):
        if old != path:
            old.unlink(missing_ok=True)


class OnnxRunner:
    """An ONNX Runtime CPU session: ``runner(**inputs) -> float32 (n, d)``.

    The first session of an export also saves ONNX Runtime's optimised graph beside it
    (:func:`optimized_path`, keyed by the runtime version and the CPU); later sessions load that
    file, which takes about half the time, since the graph rewrites are already done.
    """

    backend = "onnx"
    variant = "ort"
    precision = "fp32"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = path
        self.threads = ort_threads(threads)
        optimized = optimized_path(path)
        if not optimized.is_file():
            _save_optimized(path, optimized)
        self.session = None
        if optimized.is_file():
            try:
                self.session = _session(optimized, self.threads)
            except Exception as e:  # a damaged cache file: use the export itself
                logger.warning("optimised ONNX file %s cannot be loaded (%s)", optimized, e)
                optimized.unlink(missing_ok=True)
        if self.session is None:
            self.session = _session(path, self.threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.choice: dict = {"by": "asked"}

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        feed = {k: v for k, v in inputs.items() if k in self.input_names}
        return self.session.run(None, feed)[0]


def _options(threads: int, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    # Idle ORT threads would spin and take the CPU that decode threads need to overlap.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _session(path: Path, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"])


def optimized_path(path: Path) -> Path:
    """Where the optimised graph of the export at ``path`` is kept for this runtime and CPU."""
    import onnxruntime as ort

    from embedgenre.encoders.cpu import cpu_info

    key = hashlib.sha256(f"{ort.__version__}|{cpu_info().key()}".encode()).hexdigest()[:8]
    return path.parent / "optimized" / f"{path.stem}-{key}.onnx"


def _save_optimized(path: Path, optimized: Path) -> None:
    """Let ONNX Runtime write its optimised graph of ``path`` to ``optimized`` (atomically); on
    any failure (a read-only cache, a model too large for one file) sessions use ``path``."""
    import onnxruntime as ort

    try:
        optimized.parent.mkdir(parents=True, exist_ok=True)
        tmp_name = str(atomic.new_temp(optimized.parent, ".opt-", ".onnx"))
    except OSError as e:
        logger.debug("not saving an optimised ONNX graph (%s)", e)
        return
    try:
        # Extended, not all: the layout rewrites of "all" are redone on load at no cost, and a
        # graph saved with them cannot always be loaded again.
        opts = _options(1, "ORT_ENABLE_EXTENDED")
        opts.optimized_model_filepath = tmp_name
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        atomic.publish(tmp_name, optimized)
        for old in optimized.parent.glob("*.onnx"):
            if old != optimized and old.stem.split("-")[0] == path.stem:
                old.unlink(missing_ok=True)
    except Exception as e:
        logger.debug("not saving an optimised ONNX graph of %s (%s)", path, e)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def load_or_export(
    name: str,
    key_parts: dict[str, Any],
    build_module: Callable[[], tuple[Any, tuple, list[str], dict[str, dict[int, str]]]],
    threads: int | None = None,
    part: str = "",
) -> tuple[OnnxRunner, bool]:
    """The cached ONNX session for ``name``, exporting first if needed.

    build_module() -> (torch module, example inputs, input names, dynamic axes); called only when
    no export matches the key. Returns (runner, exported_now).
    """
    path = onnx_path(name, key_parts, part)
    exported = False
    if not path.is_file():
        logger.info("exporting %s to ONNX (once; cached at %s)", name, path)
        module, example, input_names, axes = build_module()
        export_onnx(path, module, example, input_names, axes)
        exported = True
    else:
        logger.debug("using cached ONNX export %s", path)
    try:
        return OnnxRunner(path, threads), exported
    except Exception as e:
        if exported:
            raise
        logger.warning("cached ONNX file %s cannot be loaded (%s); exporting again", path, e)
        path.unlink(missing_ok=True)
        module, example, input_names, axes = build_module()
        export_onnx(path, module, example, input_names, axes)
        return OnnxRunner(path, threads), True


def quantized_runner(fp32_path: Path, threads: int | None = None) -> OnnxRunner:
    """An int8 session of the fp32 export at ``fp32_path``: weights quantised to int8 and
    activations quantised per batch (ONNX Runtime dynamic quantisation), cached beside it."""
    path = fp32_path.parent / "int8" / fp32_path.name
    if not path.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_name = str(atomic.new_temp(path.parent, ".quant-", ".onnx"))
        try:
            quantize_dynamic(str(fp32_path), tmp_name, weight_type=QuantType.QInt8)
            atomic.publish(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        for old in path.parent.glob("*.onnx"):
            if old != path:
                old.unlink(missing_ok=True)
    runner = OnnxRunner(path, threads)
    runner.precision = "int8"
    return runner
