"""Device and backend choice, shared by the families.

device: "cpu" (default) or "cuda"/"cuda:N" (must be present; fp16 there).
backend: "torch" (the reference, and the only GPU path), "onnx" (ONNX Runtime, CPU only), or
"auto" (ONNX Runtime on CPU where the family supports it, PyTorch otherwise).
"""

from __future__ import annotations

import logging

from embedgenre.errors import EmbedgenreError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")


def resolve_device(device: str | None) -> str:
    """Validate ``device``; a CUDA device that is not present is an error, not a CPU fallback."""
    device = (device or "cpu").strip().lower()
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise EmbedgenreError(
                f"device '{device}' was asked for but no CUDA GPU is available to PyTorch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use --device cpu, "
                "or install a CUDA build of torch on a machine with an NVIDIA GPU"
            )
        return device
    raise EmbedgenreError(f"unknown device '{device}': expected 'cpu', 'cuda' or 'cuda:N'")


def resolve_backend(backend: str | None, device: str, onnx_supported: bool, name: str) -> str:
    """The backend to use for an encoder: 'torch' or 'onnx'."""
    backend = (backend or "auto").strip().lower()
    if backend not in BACKENDS:
        raise EmbedgenreError(f"unknown backend '{backend}': expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnx" if (device == "cpu" and onnx_supported) else "torch"
    if backend == "onnx":
        if device != "cpu":
            raise EmbedgenreError(
                f"backend 'onnx' runs on CPU only, but device '{device}' was asked for; "
                "use backend 'torch' on GPU"
            )
        if not onnx_supported:
            raise EmbedgenreError(
                f"encoder '{name}' cannot run through ONNX Runtime; use backend 'torch' or 'auto'"
            )
    return backend


def torch_dtype(device: str):
    """float16 on GPU, float32 on CPU."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


class TorchRunner:
    """Calls a torch module in inference mode on named numpy inputs -> float32 (n, d)."""

    def __init__(self, module, device: str, input_names: list[str]) -> None:
        self.device = device
        self.dtype = torch_dtype(device)
        self.input_names = list(input_names)
        self.module = module.to(device=device, dtype=self.dtype).eval()

    def __call__(self, **inputs):
        import numpy as np
        import torch

        tensors = []
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
            tensors.append(t.to(self.dtype) if t.is_floating_point() else t)
        with torch.inference_mode():
            out = self.module(*tensors)
        return out.float().cpu().numpy()


def make_runner(name: str, backend: str, device: str, build, key_parts: dict, threads=None):
    """A callable ``runner(**named numpy inputs) -> float32 (n, d)`` for either backend.

    build() -> (torch module, example inputs, input names, dynamic axes). With the ONNX backend
    it is called only when the cached export is missing or stale.
    """
    if backend == "onnx":
        from embedgenre.encoders.onnx_runtime import load_or_export

        runner, _ = load_or_export(name, key_parts, build, threads=threads)
        return runner
    module, _, input_names, _ = build()
    return TorchRunner(module, device, input_names)


def make_image_runner(
    name: str, backend: str, device: str, module_fn, transform, key_parts: dict, threads=None
):
    """``make_runner`` for an image tower: one ``pixels`` input, float32 (n, 3, height, width)
    as ``transform`` (an :class:`ImageTransform`) makes them.

    module_fn() -> the torch module mapping pixels to features (built only when needed).
    """
    height, width = transform.out_height, transform.size
    if (height, width) != (transform.size, transform.size):  # square exports keep their old key
        key_parts = {**key_parts, "input": [height, width]}

    def build():
        import torch

        example = (torch.zeros(2, 3, height, width),)
        return module_fn(), example, ["pixels"], {"pixels": {0: "batch"}}

    return make_runner(name, backend, device, build, key_parts, threads=threads)


def feature_module(model, forward):
    """``model`` wrapped as a torch module whose forward is ``forward(model, x)``, in eval mode.

    Lets a family export one method of a bigger model (e.g. CLIP's ``encode_image``) to ONNX.
    """
    import torch

    class FeatureModule(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return forward(self.m, x)

    return FeatureModule(model).eval()
