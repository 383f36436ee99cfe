"""A small MLP head (torch for training, numpy for inference).

Architecture: ``dim -> hidden[0] -> [hidden[1]] -> n_genres`` with ReLU and dropout, trained with
binary cross-entropy (optional positive weights), Adam/AdamW/SGD, mini-batches, and early stopping
on a validation set (the one given to ``fit`` or a seeded ``val_fraction`` carved from the data).
Deterministic for a given ``seed``. Weights are kept as numpy arrays ``weights_`` / ``biases_``.
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import GenrePredictor, check_X, check_Y, warn_empty_genres
from embedgenre.predictors.oversample import mlsmote
from embedgenre.predictors.registry import register
from embedgenre.predictors.state import HEAD_FILE, Unusable, is_count, short

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
POS_WEIGHTS = (None, "sqrt", "balanced")


@register
class MLPPredictor(GenrePredictor):
    """MLP multi-label head; see the module docstring. ``hidden``: int or tuple of 1-2 ints."""

    method = "mlp"
    tuple_params = ("hidden",)

    def __init__(
        self,
        hidden=(512,),
        dropout: float = 0.3,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        epochs: int = 200,
        patience: int = 10,
        pos_weight: str | None = None,
        oversample: bool = False,
        val_fraction: float = 0.1,
        seed: int = 0,
        classes=None,
    ):
        self.hidden = hidden
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.pos_weight = pos_weight
        self.oversample = oversample
        self.val_fraction = val_fraction
        self.seed = seed
        self.classes = classes

    def _check_params(self) -> tuple[int, ...]:
        hidden = (
            (self.hidden,) if isinstance(self.hidden, int) else tuple(int(h) for h in self.hidden)
        )
        if not 1 <= len(hidden) <= 2 or min(hidden) < 1:
            raise PredictorError(f"hidden must be one or two positive sizes, got {self.hidden!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise PredictorError(
                f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}."
            )
        if self.pos_weight not in POS_WEIGHTS:
            raise PredictorError(
                f"pos_weight must be one of None, 'sqrt', 'balanced'; got {self.pos_weight!r}."
            )
        if not 0 <= self.dropout < 1:
            raise PredictorError(f"dropout must be in [0, 1), got {self.dropout}.")
        for name in ("lr", "batch_size", "epochs"):
            if not getattr(self, name) > 0:
                raise PredictorError(f"{name} must be > 0, got {getattr(self, name)}.")
        return hidden

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> MLPPredictor:
        """Train on ``X`` (n, d), ``Y`` (n, g); early stopping on (X_val, Y_val) when given."""
        import torch

        hidden = self._check_params()
        X = check_X(X)
        Y = check_Y(Y, len(X))
        self._init_fitted(Y, classes if classes is not None else self.classes)
        empty = warn_empty_genres(Y, self.classes_)
        rng = np.random.default_rng(self.seed)
        self.validated_ = X_val is not None and bool(self.patience)
        if X_val is None and self.patience and len(X) >= 20 and self.val_fraction > 0:
            perm = rng.permutation(len(X))
            n_val = max(1, int(round(len(X) * self.val_fraction)))
            X_val, Y_val = X[perm[:n_val]], Y[perm[:n_val]]
            X, Y = X[perm[n_val:]], Y[perm[n_val:]]
        elif X_val is not None:
            X_val = check_X(X_val, X.shape[1], "X_val")
            Y_val = check_Y(Y_val, len(X_val))
        if self.oversample:
            X_new, Y_new = mlsmote(X, Y, seed=self.seed)
            logger.info("oversampling added %d synthetic items for rare genres", len(X_new))
            X, Y = np.concatenate([X, X_new]), np.concatenate([Y, Y_new])

        # One thread: reductions happen in a fixed order (deterministic), and for heads this
        # small thread hand-offs cost more than they save on a busy CPU.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = self._build(torch, X.shape[1], hidden, Y.shape[1])
                best, self.n_epochs_ = self._train(torch, net, X, Y, X_val, Y_val, rng)
        finally:
            torch.set_num_threads(threads)
        net.load_state_dict(best)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        self.weights_ = [m.weight.detach().numpy().T.copy() for m in linears]  # (in, out)
        self.biases_ = [m.bias.detach().numpy().copy() for m in linears]
        self.biases_[-1][empty] = -np.inf  # a genre never seen is never predicted
        return self

    def _build(self, torch, d: int, hidden: tuple[int, ...], g: int):
        layers, size = [], d
        for h in hidden:
            layers += [torch.nn.Linear(size, h), torch.nn.ReLU(), torch.nn.Dropout(self.dropout)]
            size = h
        layers.append(torch.nn.Linear(size, g))
        return torch.nn.Sequential(*layers)

    def _train(self, torch, net, X, Y, X_val, Y_val, rng):
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y.astype(np.float32))
        pos = Y.sum(axis=0).astype(np.float64)
        pw = None
        if self.pos_weight is not None:
            ratio = (len(Y) - pos) / np.maximum(pos, 1)
            ratio = np.sqrt(ratio) if self.pos_weight == "sqrt" else ratio
            pw = torch.from_numpy(np.clip(ratio, 1.0, 100.0).astype(np.float32))
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pw)
        val_loss_fn = torch.nn.BCEWithLogitsLoss()
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        kwargs = {"momentum": 0.9} if self.optimizer == "sgd" else {}
        opt = opt_cls[self.optimizer](
            net.parameters(), lr=self.lr, weight_decay=self.weight_decay, **kwargs
        )
        has_val = X_val is not None and len(X_val) > 0 and self.patience
        if has_val:
            Xv, Yv = torch.from_numpy(X_val), torch.from_numpy(Y_val.astype(np.float32))
        best_loss, best_state, bad, n_done = np.inf, None, 0, 0
        self.best_epoch_ = int(self.epochs)
        for epoch in range(1, int(self.epochs) + 1):
            n_done = epoch
            net.train()
            order = torch.from_numpy(rng.permutation(len(X)))
            for start in range(0, len(X), int(self.batch_size)):
                b = order[start : start + int(self.batch_size)]
                opt.zero_grad()
                loss = loss_fn(net(Xt[b]), Yt[b])
                loss.backward()
                opt.step()
            if not has_val:
                continue
            net.eval()
            with torch.no_grad():
                vloss = float(val_loss_fn(net(Xv), Yv))
            if vloss < best_loss - 1e-5:
                best_loss, bad, self.best_epoch_ = vloss, 0, epoch
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        if best_state is None:
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        logger.debug("mlp: %d epochs, best validation loss %.4f", n_done, best_loss)
        return best_state, n_done

    def chosen_params(self) -> dict:
        """Trained with validation rows: the epoch count early stopping chose, to train that
        long without stopping when refitted on every row."""
        if not getattr(self, "validated_", False):
            return {}
        return {"epochs": max(1, int(self.best_epoch_)), "patience": 0}

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        h = check_X(X, self.weights_[0].shape[0])
        for W, b in zip(self.weights_[:-1], self.biases_[:-1]):
            h = np.maximum(h @ W + b, 0.0)
        logits = h @ self.weights_[-1] + self.biases_[-1]
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    @classmethod
    def check_saved_state(cls, state: dict, classes: list[str], at: str) -> None:
        if not is_count(state.get("n_layers")):
            raise Unusable(
                HEAD_FILE,
                f"'{at}.n_layers' is {short(state.get('n_layers'))}, expected a positive integer",
            )

    @classmethod
    def array_shapes(cls, state: dict) -> dict[str, tuple[str, ...]]:
        """Per layer i, ``W<i>`` (in, out) and ``b<i>`` (out,): the input width d, then inner
        sizes h1, h2, then the genres."""
        n, shapes = state["n_layers"], {}
        for i in range(n):
            out = "g" if i == n - 1 else f"h{i + 1}"
            shapes[f"W{i}"] = ("d" if i == 0 else f"h{i}", out)
            shapes[f"b{i}"] = (out,)
        return shapes

    @property
    def n_features_in_(self) -> int:
        return self.weights_[0].shape[0]

    def _state(self):
        arrays = {}
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        return {"n_layers": len(self.weights_), "n_epochs": self.n_epochs_}, arrays

    def _load_state(self, meta, arrays):
        n = int(meta["n_layers"])
        self.weights_ = [arrays[f"W{i}"].astype(np.float32) for i in range(n)]
        self.biases_ = [arrays[f"b{i}"].astype(np.float32) for i in range(n)]
        self.n_epochs_ = meta.get("n_epochs")
