"""Image encoders that run one torch module over preprocessed pixels.

A family whose image encoder is such a module (EfficientNet-Lite, timm CNNs) subclasses
:class:`ImageTowerEncoder`: it sets ``dim`` and ``transform`` and says how to build the module
and what identifies its export; this class sets up the runner (ONNX Runtime or torch, as
:func:`~embedgenre.encoders.devices.make_image_runner` picks) and feeds it.
"""

from __future__ import annotations

import numpy as np

from embedgenre.encoders.base import Encoder
from embedgenre.encoders.devices import make_image_runner
from embedgenre.encoders.weights import Located, file_fingerprint


class ImageTowerEncoder(Encoder):
    """An image encoder over one torch module; ``options`` (``threads``, ``precision``) go to
    its runner.

    Subclasses set ``dim`` and ``transform`` before calling this ``__init__`` and implement
    :meth:`_module` and :meth:`_key_parts`.
    """

    modalities = ("image",)

    def __init__(self, name: str, located: Located, device: str, backend: str, **options) -> None:
        self._set_origin(name, located, device, backend)
        self._runner = make_image_runner(
            name,
            backend,
            device,
            self._module,
            self.transform,
            key_parts={"weights": file_fingerprint(located.path), **self._key_parts()},
            **options,
        )
        self._adopt_runner(self._runner)

    def _module(self):
        """The torch module: pixels (n, 3, H, W) as ``transform`` makes them -> (n, dim);
        called only when the runner needs it (not when a cached export serves)."""
        raise NotImplementedError

    def _key_parts(self) -> dict:
        """What, beside the weights file, identifies the module's export."""
        raise NotImplementedError

    def _forward_pixels(self, batch: np.ndarray) -> np.ndarray:
        return self._runner(pixels=batch)

    def _pixel_tensor_runner(self):
        return getattr(self._runner, "tensor", None)
