"""What the CPU can do: its model name, the instruction-set features that change which backend
and precision run fastest, and a stable key for caching measurements made on it.

    cpu_info().model             # 'AMD EPYC'
    cpu_info().has("amx_bf16")   # matrix units for bf16?
    precision_units("int8")      # features that give int8 its speed here ([] when none)

Read from ``/proc/cpuinfo`` (Linux) without importing any numeric library; elsewhere the model
comes from ``platform`` and no features are known, so bf16/int8 are not offered.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache

from embedgenre.errors import BadInputError, UnavailableError

# Features that decide which kernels ONNX Runtime and PyTorch (oneDNN) pick for fp32/bf16/int8.
KERNEL_FEATURES = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

PRECISIONS = ("fp32", "bf16", "int8")

# The matrix units that make each reduced precision faster than fp32 (any one suffices).
_UNITS = {
    "bf16": ("amx_bf16", "avx512_bf16"),
    "int8": ("amx_int8", "avx512_vnni", "avx_vnni"),
}


@dataclass(frozen=True)
class CpuInfo:
    model: str
    features: frozenset[str]
    cores: int

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def kernel_features(self) -> list[str]:
        return [f for f in KERNEL_FEATURES if f in self.features]

    def key(self) -> str:
        """Short hash of what makes a speed measurement on this CPU valid elsewhere."""
        text = "|".join([self.model, ",".join(self.kernel_features), str(self.cores)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {"model": self.model, "features": self.kernel_features, "cores": self.cores}


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (cached for the process)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return CpuInfo(model=model or "unknown", features=frozenset(flags), cores=available_cores())


def precision_units(precision: str, cpu: CpuInfo | None = None) -> list[str]:
    """The features of ``cpu`` that make ``precision`` fast (fp32: always ['fp32'])."""
    if precision == "fp32":
        return ["fp32"]
    cpu = cpu or cpu_info()
    return [f for f in _UNITS[precision] if cpu.has(f)]


def check_precision(precision: str | None, device: str = "cpu", cpu: CpuInfo | None = None) -> str:
    """Validate ``precision`` for ``device``; bf16/int8 only where the CPU has the matrix units.

    Returns the precision ('fp32' for None). Raises EmbedgenreError naming what is missing.
    """
    precision = (precision or "fp32").strip().lower()
    if precision not in PRECISIONS:
        raise BadInputError(
            f"unknown precision '{precision}':",
            f"expected one of {', '.join(PRECISIONS)}.",
            param="precision",
        )
    if precision == "fp32":
        return precision
    if device != "cpu":
        if precision == "bf16":  # the model in bfloat16 instead of float16, checked the same way
            return precision
        raise BadInputError(
            f"precision '{precision}' is a CPU option; on '{device}' the model runs in fp16 "
            "(or bf16).",
            "Leave the precision at fp32, or use the cpu device.",
            param="precision",
        )
    cpu = cpu or cpu_info()
    if not precision_units(precision, cpu):
        raise UnavailableError(
            f"precision '{precision}' needs a CPU with {precision} matrix units "
            f"({' or '.join(_UNITS[precision])}), and this CPU ({cpu.model}) has none "
            f"(it has: {', '.join(cpu.kernel_features) or 'no vector extensions detected'});",
            "use precision fp32 here.",
            param="precision",
        )
    return precision
