"""Device and backend choice, shared by the families.

device: "cpu" (default) or "cuda"/"cuda:N" (must be present; fp16 there).
backend: "torch" (the reference, and the only GPU path), "onnx" (ONNX Runtime, CPU only), or
"auto": on CPU, for bulk encoding, the faster of the two as measured once on this CPU (cached);
for queries (``purpose="query"``), ONNX Runtime, which loads in a fraction of the time.
precision (CPU): "fp32", or "bf16"/"int8" where the CPU has the matrix units, checked against fp32.
"""

from __future__ import annotations

import copy
import logging

from embedgenre.encoders import calibration
from embedgenre.encoders.cpu import check_precision, precision_units
from embedgenre.encoders.onnx_runtime import load_or_export, ort_threads, quantized_runner
from embedgenre.errors import BadInputError, EmbedgenreError, UnavailableError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
PURPOSES = ("bulk", "query")


def resolve_device(device: str | None) -> str:
    """Validate ``device``; a CUDA device that is not present is an error, not a CPU fallback."""
    device = (device or "cpu").strip().lower()
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UnavailableError(
                f"device '{device}' was asked for but no CUDA GPU is available to PyTorch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda});",
                "use the cpu device, or install a CUDA build of torch on a machine with an "
                "NVIDIA GPU.",
                param="device",
            )
        return device
    raise BadInputError(
        f"unknown device '{device}':", "expected 'cpu', 'cuda' or 'cuda:N'.", param="device"
    )


def resolve_backend(
    backend: str | None, device: str, onnx_supported: bool, name: str, measure: bool = False
) -> str:
    """The backend to use for an encoder: 'torch', 'onnx', or 'auto' (left to be measured).

    measure: the family times its candidates (see :mod:`embedgenre.encoders.calibration`), so
    "auto" on CPU stays "auto"; otherwise "auto" is ONNX Runtime on CPU where supported (what a
    one-off query wants: an ONNX session loads in a fraction of a second, importing torch and
    building the model takes seconds).
    """
    backend = (backend or "auto").strip().lower()
    if backend not in BACKENDS:
        raise EmbedgenreError(f"unknown backend '{backend}': expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if device != "cpu" or not onnx_supported:
            return "torch"
        return "auto" if measure else "onnx"
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


def wants_measurement(options: dict) -> bool:
    """True unless the encoder is created for queries (``purpose="query"``): bulk encoding
    measures the backends, a query process takes the one that loads fastest."""
    purpose = options.get("purpose", "bulk")
    if purpose not in PURPOSES:
        raise EmbedgenreError(f"unknown purpose '{purpose}': expected one of {', '.join(PURPOSES)}")
    return purpose == "bulk"


def image_backend(backend: str | None, device: str, name: str, options: dict) -> str:
    """``resolve_backend`` for a family whose image tower runs on either backend."""
    return resolve_backend(
        backend, device, onnx_supported=True, name=name, measure=wants_measurement(options)
    )


def runner_options(options: dict) -> dict:
    """The ``create`` options an image runner takes: threads and precision."""
    return {"threads": options.get("threads"), "precision": options.get("precision", "fp32")}


def torch_dtype(device: str):
    """float16 on GPU, float32 on CPU."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


class TorchRunner:
    """Calls a torch module in inference mode on named numpy inputs -> float32 (n, d).

    channels_last: 4-d inputs and the module's weights in NHWC order (faster convolutions with
    oneDNN on some CPUs). precision "bf16": CPU autocast to bfloat16 (matrix units); on a GPU
    the module in bfloat16 instead of float16.
    """

    backend = "torch"

    def __init__(
        self,
        module,
        device: str,
        input_names: list[str],
        channels_last: bool = False,
        precision: str = "fp32",
    ) -> None:
        import torch

        self.device = device
        on_gpu = device.startswith("cuda")
        self.dtype = torch.bfloat16 if on_gpu and precision == "bf16" else torch_dtype(device)
        self.input_names = list(input_names)
        self.channels_last = bool(channels_last)
        self.precision = precision
        self._autocast = precision == "bf16" and not on_gpu
        self.module = module.to(device=device, dtype=self.dtype).eval()
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.variant = "channels_last" if self.channels_last else "eager"
        self.choice: dict = {"by": "asked"}

    def tensor(self, pixels):
        """A float tensor (n, 3, H, W) already on this device -> float32 (n, d) numpy features
        (the tensor input pipeline's entry: no copy through host memory on a GPU)."""
        import torch

        x = pixels.to(self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.module(x)
            else:
                out = self.module(x)
        return out.float().cpu().numpy()

    def __call__(self, **inputs):
        import numpy as np
        import torch

        tensors = []
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
            if self.channels_last and t.ndim == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            tensors.append(t.to(self.dtype) if t.is_floating_point() else t)
        with torch.inference_mode():
            if self._autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.module(*tensors)
            else:
                out = self.module(*tensors)
        return out.float().cpu().numpy()


def make_runner(
    name: str, backend: str, device: str, build, key_parts: dict, threads=None, part: str = ""
):
    """A callable ``runner(**named numpy inputs) -> float32 (n, d)`` for 'onnx' or 'torch'.

    build() -> (torch module, example inputs, input names, dynamic axes). With the ONNX backend
    it is called only when the cached export is missing or stale. part: a sub-model's folder in
    the export cache (one encoder may export several towers).
    """
    if backend == "onnx":
        runner, _ = load_or_export(name, key_parts, build, threads=threads, part=part)
        return runner
    module, _, input_names, _ = build()
    return TorchRunner(module, device, input_names)


def _conv_layers(module) -> int:
    import torch

    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def image_key_parts(key_parts: dict, transform) -> dict:
    """The export key of an image tower fed by ``transform``."""
    height, width = transform.out_height, transform.size
    if (height, width) != (transform.size, transform.size):  # square exports keep their old key
        return {**key_parts, "input": [height, width]}
    return key_parts


def make_image_runner(
    name: str,
    backend: str,
    device: str,
    module_fn,
    transform,
    key_parts: dict,
    threads=None,
    precision: str = "fp32",
):
    """``make_runner`` for an image tower: one ``pixels`` input, float32 (n, 3, height, width)
    as ``transform`` (an :class:`ImageTransform`) makes them.

    module_fn() -> the torch module mapping pixels to features (built only when needed, once).
    backend "auto": the fastest of ONNX Runtime, torch eager and (for CNNs) torch channels-last,
    measured once on this CPU and cached. precision "bf16" runs torch with CPU autocast, "int8"
    a dynamically quantised ONNX model; either is checked against fp32 on probe images first
    (:func:`check_fidelity`). The runner's ``backend`` and ``choice`` say what was picked, how.
    """
    height, width = transform.out_height, transform.size
    key_parts = image_key_parts(key_parts, transform)
    built: list = []

    def module():
        if not built:
            built.append(module_fn())
        return built[0]

    def build():
        import torch

        example = (torch.zeros(2, 3, height, width),)
        return module(), example, ["pixels"], {"pixels": {0: "batch"}}

    if precision != "fp32":
        return _reduced_precision_runner(
            name, backend, device, build, module, key_parts, threads, precision, (height, width)
        )
    if backend != "auto":
        return make_runner(name, backend, device, build, key_parts, threads=threads)

    channels_last = _conv_layers(module()) > 1  # a CNN (a ViT has one: its patch embedding)
    return measured_runner(
        name, device, build, key_parts, threads, {"pixels": probe_pixels(16, height, width)},
        channels_last=channels_last,
    )  # fmt: skip


def measured_runner(
    name: str,
    device: str,
    build,
    key_parts: dict,
    threads,
    example: dict,
    channels_last: bool = False,
    part: str = "",
):
    """The faster of ONNX Runtime and torch eager (and torch channels-last when
    ``channels_last``) for the module ``build()`` makes, timed once on ``example`` (named numpy
    inputs, batch first) on this CPU and cached (:mod:`calibration`); later calls read the
    cache and build only the chosen runner. ``part``: a sub-model (e.g. a text tower)."""
    built: list = []

    def built_once():
        if not built:
            built.append(build())
        return built[0]

    def torch_runner(layout: bool):
        module, _, input_names, _ = built_once()
        if layout:
            module = copy.deepcopy(module)  # the eager candidate keeps the original layout
        return TorchRunner(module, device, input_names, channels_last=layout)

    measured_key = {**key_parts, "part": part} if part else key_parts
    path = calibration.calibration_path(name, measured_key, ort_threads(threads))
    record = calibration.read_calibration(path)
    known = ("onnx", "torch") + (("torch+channels_last",) if channels_last else ())
    if record is not None and record["chosen"] in known:
        if record["chosen"] == "onnx":
            runner = make_runner(name, "onnx", device, built_once, key_parts, threads, part=part)
        else:
            runner = torch_runner(record["chosen"].endswith("channels_last"))
        runner.choice = {"by": "cached measurement", **record}
        return runner
    onnx_runner, _ = load_or_export(name, key_parts, built_once, threads=threads, part=part)
    candidates = {"onnx": onnx_runner, "torch": torch_runner(False)}
    if channels_last:
        candidates["torch+channels_last"] = torch_runner(True)
    count = len(next(iter(example.values())))
    record = calibration.measure(
        path, {k: (lambda r=r: r(**example)) for k, r in candidates.items()}, count
    )
    runner = candidates[record["chosen"]]
    runner.choice = {"by": "measured now", **record}
    return runner


def probe_pixels(n: int, height: int, width: int, seed: int = 0):
    """float32 (n, 3, height, width) smooth random images at about unit scale, like normalised
    photos (coarse colour fields plus a little noise), for timing and fidelity checks."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, height, width), dtype=np.float32)
    for i in range(n):
        coarse = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
        img = np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
        )
        img = img + rng.normal(0, 8, size=img.shape)
        out[i] = ((img / 255.0 - 0.45) / 0.27).transpose(2, 0, 1)
    return out


MIN_COSINE = 0.999


def check_fidelity(reference, candidate, example, what: str) -> float:
    """The smallest cosine between ``reference`` and ``candidate`` embeddings of ``example``;
    EmbedgenreError when it is below MIN_COSINE (the reduced precision changes the answers)."""
    import numpy as np

    a = np.asarray(reference(pixels=example), dtype=np.float64)
    b = np.asarray(candidate(pixels=example), dtype=np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    worst = float(cos.min())
    if worst < MIN_COSINE:
        raise BadInputError(
            f"{what} changes the embeddings too much: cosine to fp32 as low as {worst:.5f} "
            f"(at least {MIN_COSINE} is needed);",
            "use precision fp32 for this encoder.",
            param="precision",
        )
    return worst


FIDELITY_POSTERS = 32  # catalog posters a reduced precision is checked on before indexing


def check_on_posters(encoder, reference, paths, what: str) -> float | None:
    """:func:`check_fidelity` of ``encoder`` against ``reference`` (the same model at fp32) on
    the first :data:`FIDELITY_POSTERS` of ``paths`` that decode; None when none does.

    The probe images a reduced precision is first checked on are smoother than real posters:
    bf16 EfficientNet-Lite0 kept cosine 0.9997 on them and fell to 0.9976 on real posters, so
    an index checks the catalog's own posters too before it encodes any."""
    import numpy as np

    from embedgenre.errors import PosterError
    from embedgenre.images import load_image

    draft = getattr(getattr(encoder, "transform", None), "draft_size", None)
    pixels = []
    for path in paths:
        if len(pixels) == FIDELITY_POSTERS:
            break
        try:
            pixels.append(encoder.preprocess(load_image(path, draft)))
        except PosterError:
            continue  # the index skips and lists it
    if not pixels:
        return None
    x = np.stack(pixels)
    return check_fidelity(
        lambda pixels: reference.encode_pixels(pixels),
        lambda pixels: encoder.encode_pixels(pixels),
        x,
        f"{what} (on {len(x)} of the catalog's posters)",
    )


def _reduced_precision_runner(
    name, backend, device, build, module, key_parts, threads, precision, shape
):
    """A bf16 (torch autocast) or int8 (ONNX dynamic quantisation) image runner, checked
    against fp32 on probe images before it is used."""
    check_precision(precision, device)
    wanted = {"bf16": "torch", "int8": "onnx"}[precision]
    if backend not in ("auto", wanted):
        raise BadInputError(
            f"precision '{precision}' runs on backend '{wanted}', not '{backend}';",
            f"use backend {wanted} or auto.",
            param="backend",
        )
    example = probe_pixels(8, *shape, seed=1)
    if precision == "bf16":
        reference = TorchRunner(module(), device, ["pixels"])
        # on a GPU the bf16 runner holds its own copy of the weights (the reference keeps fp16)
        bf16 = copy.deepcopy(module()) if device.startswith("cuda") else module()
        runner = TorchRunner(bf16, device, ["pixels"], precision="bf16")
    else:
        reference, _ = load_or_export(name, key_parts, build, threads=threads)
        runner = quantized_runner(reference.path, threads=threads)
    cosine = check_fidelity(reference, runner, example, f"precision '{precision}' on {name}")
    runner.precision = precision
    runner.choice = {
        "by": "asked",
        "precision": precision,
        "units": precision_units(precision) if device == "cpu" else [device],
        "min_cosine_to_fp32": round(cosine, 6),
    }
    return runner


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
