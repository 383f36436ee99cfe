"""Where a FAISS index lives: the CPU, or a CUDA GPU through faiss-gpu (the ``gpu`` extra).

Devices are named ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (GPU number N). An index is copied to a
GPU with :func:`to_device` and back with :func:`to_cpu`; :func:`gpu_kmeans` runs only an IVF
index's coarse k-means on a GPU while the index stays on the CPU.
"""

from __future__ import annotations

import logging

from embedgenre.errors import FaissGpuError, IndexStoreError

logger = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")  # "cuda:N" picks GPU N


def gpu_number(device: str) -> int:
    """ "cuda" -> 0, "cuda:1" -> 1; IndexStoreError for anything but cpu / cuda / cuda:N."""
    name, _, number = device.partition(":")
    if name not in DEVICES or (number and not number.isdigit()) or (name == "cpu" and number):
        raise IndexStoreError(
            f"Unknown device {device!r}; expected cpu, cuda or cuda:N (N = GPU number)."
        )
    return int(number or 0)


def check_device(device: str) -> None:
    """IndexStoreError for an unknown device; FaissGpuError for a CUDA device faiss cannot use."""
    gpu_number(device)
    if device.startswith("cuda") and not gpu_available():
        raise FaissGpuError(
            "device 'cuda' was asked for but the installed faiss has no GPU support (or sees no "
            "GPU).",
            "Install the gpu extra (pip install 'embedgenre[gpu]', which brings faiss-gpu-cu12) "
            "on a machine with an NVIDIA GPU, or use the cpu device.",
            param="device",
        )


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees at least one GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_device(index, device: str):
    """Return ``index`` on ``device`` ("cpu", "cuda" or "cuda:N"); a copy when it moves."""
    check_device(device)
    if device == "cpu":
        return to_cpu(index)
    import faiss

    # faiss's Python wrapper keeps a reference to the resources in the returned index
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu_number(device), index)


def to_cpu(index):
    """``index`` itself on the CPU; a CPU copy of a faiss-gpu index."""
    import faiss

    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        return faiss.index_gpu_to_cpu(index)
    return index


def ivf_of(index):
    """The inverted-file part of ``index`` (itself, or inside a pre-transform), or None."""
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    except Exception:  # GPU indexes and other wrappers
        return index if hasattr(index, "nprobe") else None


def gpu_kmeans(index, device: str) -> bool:
    """Have an untrained IVF ``index`` run its coarse k-means on ``device`` with faiss-gpu (the
    cells are the same kind of result; the index itself stays on the CPU). True when it will;
    False, with a log line, on the CPU or where faiss has no GPU support (CPU k-means then)."""
    if device == "cpu":
        return False
    gpu_number(device)
    ivf = ivf_of(index)
    if ivf is None:
        return False
    if not gpu_available():
        logger.info("faiss has no GPU support here: IVF k-means runs on the CPU.")
        return False
    import faiss

    inner = faiss.IndexFlatIP(ivf.d) if ivf.metric_type == faiss.METRIC_INNER_PRODUCT else None
    inner = inner if inner is not None else faiss.IndexFlatL2(ivf.d)
    on_gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu_number(device), inner)
    ivf.clustering_index = on_gpu
    index.gpu_clustering = on_gpu  # faiss does not own it: the caller's index keeps it alive
    return True
