"""A small VGG-style CNN trained from scratch on poster pixels: the "no pretraining" baseline.

Posters are shrunk to 64x96 (width x height; :func:`embedgenre.evaluate.pixels.load_poster_pixels`), so a few epochs fit in a minute or two on a CPU.
It answers "how much do pretrained features buy over learning from the pixels of this data alone?".
The network: four blocks of 3x3 conv + batch norm + ReLU + 2x2 max pool (16, 32, 64, 128 channels),
global average pooling, dropout, one linear layer to ``n_genres`` logits, trained with binary
cross-entropy and Adam; random horizontal flips as the only augmentation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import GenrePredictor, check_Y

logger = logging.getLogger(__name__)


def _build_net(n_out: int, width: int):
    import torch.nn as nn

    layers: list = []
    c_in = 3
    for c in (width, width * 2, width * 4, width * 8):
        layers += [
            nn.Conv2d(c_in, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(c_in, n_out)]
    return nn.Sequential(*layers)


class ScratchCNN(GenrePredictor):
    """Predictor over poster pixels (uint8 (n, 3, H, W)), a
    :class:`~embedgenre.predictors.base.GenrePredictor`: its thresholds are tuned like every
    other predictor's (:class:`~embedgenre.predictors.tuning.TunedThresholds`).
    ``progress(epoch, epochs, mean_loss)``, when given, is called after each epoch.
    """

    method = "scratch_cnn"

    def __init__(
        self,
        epochs: int = 6,
        batch_size: int = 64,
        lr: float = 2e-3,
        width: int = 16,
        seed: int = 0,
        progress: Callable[[int, int, float], None] | None = None,
        classes: list[str] | None = None,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.width = width
        self.seed = seed
        self.progress = progress
        self.classes = classes

    def _to_tensor(self, pixels: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0)
        return (x - self.mean_) / self.std_

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> ScratchCNN:
        """Train on pixels ``X`` (n, 3, H, W) uint8 and labels ``Y`` (n, g) 0/1."""
        import torch

        X = np.asarray(X)
        Y = np.asarray(Y, dtype=np.float32)
        if X.ndim != 4 or X.shape[1] != 3 or X.shape[0] != Y.shape[0]:
            raise PredictorError(
                f"Expected pixels (n, 3, H, W) and labels (n, g) with the same n; got {X.shape} "
                f"and {Y.shape}."
            )
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        xf = X.astype(np.float32) / 255.0
        self.mean_ = torch.from_numpy(xf.mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1))
        self.std_ = torch.from_numpy(xf.std(axis=(0, 2, 3)).reshape(1, 3, 1, 1) + 1e-6)
        del xf
        net = _build_net(Y.shape[1], self.width)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=1e-4)
        steps = max(1, self.epochs * int(np.ceil(len(X) / self.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        y_all = torch.from_numpy(Y)
        net.train()
        for epoch in range(self.epochs):
            order = torch.randperm(len(X), generator=gen)
            total, seen = 0.0, 0
            for start in range(0, len(X), self.batch_size):
                idx = order[start : start + self.batch_size]
                xb = self._to_tensor(X[idx.numpy()])
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb[flip] = xb[flip].flip(-1)
                loss = loss_fn(net(xb), y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            logger.debug("scratch CNN epoch %d/%d loss %.4f", epoch + 1, self.epochs, total / seen)
            if self.progress is not None:
                self.progress(epoch + 1, self.epochs, total / seen)
        net.eval()
        self.net_ = net
        self._init_fitted(check_Y(Y, len(Y)), classes if classes is not None else self.classes)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, g) float64 sigmoid scores."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(X), 256):
                logits = self.net_(self._to_tensor(np.asarray(X[start : start + 256])))
                out.append(torch.sigmoid(logits).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)))
