"""Pick the faster backend for an encoder on this CPU by timing them, once, and remember it.

Which of ONNX Runtime and PyTorch runs a tower faster depends on the model (a ViT's attention
versus a CNN's depthwise convolutions), the CPU's kernels (AVX2, AVX-512, AMX) and the library
versions, so no fixed rule holds everywhere. The first time an encoder is used for bulk encoding
with backend "auto", every candidate runs the same synthetic batch (images, or token ids for a
text model), interleaved, and the one with the most items per second wins. The result is cached beside the ONNX export in
``<cache>/onnx/<slug>/backend-<key>.json``; the key hashes the model's export key, the CPU
(model name, kernel features, cores), the thread count and the torch/onnxruntime versions, so a
different machine or an upgrade measures again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedgenre.encoders.base import package_versions
from embedgenre.encoders.cpu import cpu_info
from embedgenre.encoders.weights import cache_dir, slug
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

CALIBRATION_RECIPE = 2  # bump when the measurement changes
ROUNDS = 3
# torch's first two calls of a fresh module run at ~60% of its speed (ViT-B-32, batch 16: 19.9
# and 18.5 images/s, then 31-32), so each candidate gets two calls before it is timed
WARMUP = 2


def calibration_path(name: str, key_parts: dict[str, Any], threads: int) -> Path:
    """The cache file holding the backend measured for ``name`` on this CPU."""
    cpu = cpu_info()
    parts = {
        "name": name,
        "key": key_parts,
        "cpu": cpu.key(),
        "threads": int(threads),
        "recipe": CALIBRATION_RECIPE,
        **package_versions("torch", "onnxruntime", "onnx"),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir() / "onnx" / slug(name) / f"backend-{digest[:16]}.json"


def read_calibration(path: Path) -> dict | None:
    """A cached measurement, or None when missing or unreadable (then it is measured again)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("chosen"), str):
        return None
    return record


def time_candidates(
    candidates: dict[str, Callable[[], Any]], count: int, rounds: int = ROUNDS
) -> dict[str, float]:
    """Items per second of each candidate (a call encodes ``count`` items): ``WARMUP`` calls
    each, then ``rounds`` rounds taking turns, so load from other processes hits all of them
    alike; the best round of each counts."""
    best = {k: float("inf") for k in candidates}
    for run in candidates.values():
        for _ in range(WARMUP):
            run()
    for _ in range(rounds):
        for key, run in candidates.items():
            t0 = time.perf_counter()
            run()
            best[key] = min(best[key], time.perf_counter() - t0)
    return {k: round(count / max(v, 1e-9), 2) for k, v in best.items()}


def measure(path: Path, candidates: dict[str, Callable[[], Any]], count: int) -> dict:
    """Time ``candidates`` (name -> run(), each encoding ``count`` items), write the record to
    ``path``, return it."""
    t0 = time.perf_counter()
    rates = time_candidates(candidates, count)
    chosen = max(rates, key=rates.get)
    cpu = cpu_info()
    record = {
        "chosen": chosen,
        "items_per_s": rates,
        "batch": int(count),
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu": cpu.to_dict(),
        "versions": package_versions("torch", "onnxruntime"),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, record)
    except OSError as e:  # a read-only cache measures again next time; nothing else changes
        logger.warning("cannot cache the backend measurement at %s (%s)", path, e)
    logger.info(
        "backend measured on %s: %s (%s items/s)",
        cpu.model,
        chosen,
        ", ".join(f"{k} {v}" for k, v in rates.items()),
    )
    return record
