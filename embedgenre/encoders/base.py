"""The Encoder contract shared by every family, plus image preprocessing in NumPy.

An encoder maps images and/or texts to float32 (n, dim) arrays, L2-normalised and C-contiguous.
Families implement ``_forward_pixels`` (float32 (n, 3, H, W) -> (n, d)) and/or
``_forward_texts`` (list[str] -> (n, d)); this base class does batching, ordering, progress and
normalisation, so every family behaves the same way.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedgenre.encoders.batching import iter_image_batches
from embedgenre.errors import EmbedgenreError
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class ImageTransform:
    """Resize + crop + normalise a PIL image to float32 (3, height, size).

    resize_mode "shortest": scale the short side to ``size / crop_pct``, then take the centre
    ``size`` x ``size`` crop (the usual ImageNet/CLIP evaluation transform); "squash": resize the
    whole image to ``size`` wide x ``height`` tall ignoring the aspect ratio (``height`` defaults
    to ``size``: a square). Pixel values become ``(x / 255 - mean) / std`` per channel.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    height: int | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(
                f"interpolation {self.interpolation!r}: expected one of {list(_RESAMPLE)}"
            )
        if self.resize_mode not in ("shortest", "squash"):
            raise ValueError(f"resize_mode {self.resize_mode!r}: expected 'shortest' or 'squash'")
        if self.height is not None and self.resize_mode != "squash":
            raise ValueError("height other than size needs resize_mode 'squash'")

    @property
    def out_height(self) -> int:
        return self.size if self.height is None else self.height

    @property
    def draft_size(self) -> tuple[int, int]:
        """Smallest (w, h) a JPEG may be decoded at without losing detail for this transform."""
        if self.resize_mode == "squash":
            return (self.size, self.out_height)
        side = int(round(self.size / self.crop_pct))
        return (side, side)

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Source box (left, top, right, bottom) that ends up in the output."""
        if self.resize_mode == "squash":
            return (0.0, 0.0, float(width), float(height))
        # The centre crop of the resized image is a centred square of side short*crop_pct.
        side = min(width, height) * self.crop_pct
        left, top = (width - side) / 2.0, (height - side) / 2.0
        return (left, top, left + side, top + side)

    def __call__(self, img: Image.Image) -> np.ndarray:
        if img.mode != "RGB":
            img = img.convert("RGB")
        left, top, right, bottom = self.box(*img.size)
        width, height = self.size, self.out_height
        if round(right - left) == width and round(bottom - top) == height:
            # already at the model's scale (most posters are 224 px wide): crop, no resampling
            left, top = round(left), round(top)
            resized = img.crop((left, top, left + width, top + height))
        else:
            resized = img.resize(
                (width, height),
                resample=_RESAMPLE[self.interpolation],
                box=(left, top, right, bottom),
                reducing_gap=3.0,
            )
        std = np.asarray(self.std, dtype=np.float32)
        scale = 1.0 / (255.0 * std)
        offset = -np.asarray(self.mean, dtype=np.float32) / std
        out = np.empty((3, height, width), dtype=np.float32)
        # per channel, in place, from Pillow's contiguous bands: half the time of the strided
        # (H, W, 3) channel views, ~10x faster than broadcasting over them
        for c, band in enumerate(resized.split()):
            np.multiply(np.asarray(band), scale[c], out=out[c], casting="unsafe")
            out[c] += offset[c]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageTransform:
        """The transform ``to_dict`` described (lists read back from JSON become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["height"] is None:  # square transforms are described as they always were
            del d["height"]
        return d


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32, C-contiguous (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def progress_enabled(progress: bool) -> bool:
    """Show a progress bar only when asked and INFO messages of embedgenre are shown."""
    return bool(progress) and logging.getLogger("embedgenre").isEnabledFor(logging.INFO)


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self._bar = None
        if enabled and total > 0:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(description, total=total)
            self._bar.start()

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class Encoder:
    """Base class; see the module docstring and CONTRACTS.md for the contract.

    Attributes set by subclasses: name, family, dim, modalities, space, device, backend,
    weights_source ("packaged", "cache", ...), weights_path, transform (image encoders).
    """

    name: str
    family: str
    dim: int
    modalities: tuple[str, ...]
    space: str
    device: str = "cpu"
    backend: str = "torch"
    precision: str = "fp32"
    backend_choice: dict | None = None  # how the backend was chosen (asked, measured: figures)
    weights_source: str | None = None
    weights_path: Path | None = None
    transform: ImageTransform | None = None
    _versions: tuple[str, ...] = ("torch", "numpy", "pillow", "onnxruntime")

    # -- what families implement -------------------------------------------------------------
    def _set_origin(self, name: str, located, device: str, backend: str) -> None:
        """Record what every encoder reports: its name (also its space, unless a family shares
        one), where it runs, and where its weights came from (a ``weights.Located``)."""
        self.name = name
        self.space = name
        self.device = device
        self.backend = backend
        self.weights_source = located.source
        self.weights_path = located.path

    def _adopt_runner(self, runner) -> None:
        """Record the backend, precision and choice of the runner that does the work."""
        self.backend = runner.backend
        self.precision = getattr(runner, "precision", "fp32")
        self.backend_choice = {"variant": getattr(runner, "variant", None), **runner.choice}

    def _forward_pixels(self, batch: np.ndarray) -> np.ndarray:  # (n,3,H,W) -> (n,d)
        raise NotImplementedError

    def _forward_texts(self, texts: list[str]) -> np.ndarray:  # n texts -> (n,d)
        raise NotImplementedError

    # -- images ------------------------------------------------------------------------------
    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            other = "encode_texts" if modality == "image" else "encode_images"
            raise EmbedgenreError(
                f"encoder '{self.name}' has no {modality} tower (modalities: "
                f"{', '.join(self.modalities)}); use {other}, or an encoder with a {modality} tower "
                "(`embedgenre models` lists them)"
            )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """PIL image -> float32 (3, H, W), ready for ``encode_pixels``."""
        self._require("image")
        assert self.transform is not None
        return self.transform(img)

    def encode_pixels(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W) preprocessed pixels -> float32 (n, dim), L2-normalised."""
        self._require("image")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise EmbedgenreError(
                f"encode_pixels expects an array of shape (n, 3, H, W), got {batch.shape}; "
                "build it with np.stack([encoder.preprocess(img) for img in images])"
            )
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(self._forward_pixels(batch))

    def encode_pixel_tensor(self, pixels) -> np.ndarray:
        """A float torch tensor (n, 3, H, W) of preprocessed pixels, on any device -> float32
        (n, dim), L2-normalised. A torch image tower takes it where it lies (the tensor input
        pipeline's GPU path); other runners get it as a NumPy array."""
        self._require("image")
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        runner = self._pixel_tensor_runner()
        if runner is None:
            return self.encode_pixels(pixels.float().cpu().numpy())
        return l2_normalize(runner(pixels))

    def _pixel_tensor_runner(self):
        """A callable taking a pixel tensor on ``device`` (None: feed NumPy arrays instead)."""
        return None

    def encode_images(
        self,
        images: Sequence[str | Path | Image.Image],
        batch_size: int = 32,
        progress: bool = False,
        workers: int | None = None,
    ) -> np.ndarray:
        """Image paths or PIL images -> float32 (n, dim), L2-normalised, in input order.

        A file that cannot be read raises PosterError (use ``iter_image_batches`` to skip them).
        """
        self._require("image")
        images = list(images)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        bar = _Progress(len(images), f"encoding images ({self.name})", progress_enabled(progress))
        try:
            for batch, rows, failures in iter_image_batches(
                images,
                self.preprocess,
                batch_size=batch_size,
                workers=workers,
                draft_size=self.transform.draft_size if self.transform else None,
            ):
                if failures:
                    raise failures[0][1]
                out[rows] = self.encode_pixels(batch)
                bar.advance(len(rows))
        finally:
            bar.close()
        return np.ascontiguousarray(out)

    # -- texts -------------------------------------------------------------------------------
    def encode_texts(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Texts -> float32 (n, dim), L2-normalised, in input order.

        Texts are batched longest first (less padding), then put back in input order.
        """
        self._require("text")
        if isinstance(texts, str):
            raise EmbedgenreError(
                "encode_texts expects a list of strings, got one string; wrap it: [text]"
            )
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise EmbedgenreError(f"encode_texts: item {i} is {type(t).__name__}, expected str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        bar = _Progress(len(texts), f"encoding texts ({self.name})", progress_enabled(progress))
        try:
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = l2_normalize(self._forward_texts([texts[i] for i in rows]))
                bar.advance(len(rows))
        finally:
            bar.close()
        return np.ascontiguousarray(out)

    # -- description -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What an index manifest records about this encoder (JSON-serialisable)."""
        return {
            "name": self.name,
            "family": self.family,
            "dim": int(self.dim),
            "space": self.space,
            "modalities": list(self.modalities),
            "preprocessing": self.transform.to_dict() if self.transform else None,
            "text": self._text_description(),
            "backend": self.backend,
            "precision": self.precision,
            "backend_choice": self.backend_choice,
            "device": self.device,
            "weights": {
                "source": self.weights_source,
                "path": str(self.weights_path) if self.weights_path else None,
            },
            "versions": package_versions(*self._versions),
        }

    def _text_description(self) -> dict[str, Any] | None:
        return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, "
            f"modalities={self.modalities}, backend={self.backend!r}, device={self.device!r})"
        )


class CatalogFittedEncoder(Encoder):
    """An encoder with a part fitted, without labels, on the catalog it embeds (``hybrid:``).

    Its ``dim`` and ``space`` are known once it is fitted (:meth:`fit`) or its fit is loaded
    (:meth:`load_state`); asking for ``dim`` before raises. The fit is stored inside the
    embedding set, in the folder :attr:`state_dir`, whose :attr:`state_marker` file is written
    last, so queries are embedded exactly as the catalog was.
    """

    state_dir: str = "fit"
    state_marker: str = "fit.json"
    _dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise EmbedgenreError(
                f"encoder '{self.name}' is fitted on a catalog and is not fitted yet, so its "
                "dimension is not known: fit it (`encoder.fit(texts)`) or load a stored fit "
                "(`embedgenre.encoders.load_set_encoder`)"
            )
        return self._dim

    @property
    def fitted(self) -> bool:
        return self._dim is not None

    def fit(self, texts: list[str]) -> CatalogFittedEncoder:
        raise NotImplementedError

    def save_state(self, directory: Path) -> None:
        raise NotImplementedError

    def load_state(self, directory: Path) -> CatalogFittedEncoder:
        raise NotImplementedError

    @classmethod
    def has_state(cls, directory: Path) -> bool:
        """Whether a complete fit is stored in the set folder ``directory``."""
        return (Path(directory) / cls.state_dir / cls.state_marker).is_file()

    @classmethod
    def copy_state(cls, source: Path, directory: Path) -> None:
        """Copy the fit stored in ``source`` to ``directory`` (files written atomically, the
        marker last)."""
        src, dst = Path(source) / cls.state_dir, Path(directory) / cls.state_dir
        names = sorted(p.name for p in src.iterdir() if p.is_file() and p.name != cls.state_marker)
        for name in [*names, cls.state_marker]:
            atomic.copy_file(src / name, dst / name)

    def __repr__(self) -> str:
        dim = self._dim if self._dim is not None else "unfitted"
        return f"{type(self).__name__}(name={self.name!r}, dim={dim}, backend={self.backend!r})"


def batched(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
