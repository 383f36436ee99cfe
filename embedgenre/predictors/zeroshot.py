"""Zero-shot genres: cosine between an embedding and genre prompts embedded in the same space.

The prompt matrix W (dim, n_genres) is built once: every genre x template prompt is embedded by
the text side of the embedding's space, averaged per genre and re-normalised. Scores S = X @ W are
standardised per genre over the fitted data (z), then mapped to probabilities: without labels
``sigmoid((z - offset) / temperature)``; with labels, a per-genre logistic fit on z (Platt scaling).
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.predictors.base import GenrePredictor, check_X, check_Y
from embedgenre.predictors.registry import register
from embedgenre.predictors.templates import prompts_for

logger = logging.getLogger(__name__)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def require_text_side(encoder, set_name: str | None = None) -> None:
    """Raise PredictorError unless ``encoder`` can embed text in its own (shared) space."""
    modalities = tuple(getattr(encoder, "modalities", ()))
    if "text" not in modalities:
        name = getattr(encoder, "name", str(encoder))
        what = f"embedding set {set_name!r}" if set_name else f"encoder {name!r}"
        raise PredictorError(
            f"Zero-shot needs a text side in the same space as the embeddings, but {what} "
            f"(encoder {name}) has none (modalities: {', '.join(modalities) or 'none'}). "
            "Use a trained method instead (knn, mlknn, linear or mlp), or index the "
            "posters with a CLIP encoder.",
            param="method",
        )


def prompt_matrix(encoder, genres: list[str], modality: str) -> np.ndarray:
    """(dim, n_genres) float32: per genre the re-normalised mean of its prompt embeddings."""
    require_text_side(encoder)
    prompts = [p for g in genres for p in prompts_for(g, modality)]
    per = len(prompts) // len(genres)
    E = np.asarray(encoder.encode_texts(prompts), dtype=np.float32).reshape(len(genres), per, -1)
    W = E.mean(axis=1)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return np.ascontiguousarray(W.T)


@register
class ZeroShotPredictor(GenrePredictor):
    """Zero-shot multi-label predictor.

    ``prompts``: the prompt matrix (dim, n_genres) of :func:`prompt_matrix`, one column per genre
    in ``classes`` order, embedded by the text side of the embeddings' space; or ``encoder``: the
    registry name of an encoder with such a text side, loaded in ``fit`` to embed the prompts.
    Both are plain values, so the predictor survives :func:`sklearn.base.clone`.
    ``modality``: which templates ("poster" or "plot"). ``classes``: genre names (required when
    fitting without labels).
    """

    method = "zeroshot"
    saved_arrays = {
        "W": ("d", "g"),
        "mean": ("g",),
        "std": ("g",),
        "slope": ("g",),
        "bias": ("g",),
    }

    def __init__(
        self,
        prompts=None,
        encoder: str | None = None,
        modality: str = "poster",
        offset: float = 1.0,
        temperature: float = 0.5,
        calibrate: bool = True,
        classes=None,
    ):
        self.prompts = prompts
        self.encoder = encoder
        self.modality = modality
        self.offset = offset
        self.temperature = temperature
        self.calibrate = calibrate
        self.classes = classes

    def _prompt_matrix(self) -> np.ndarray:
        g = len(self.classes_)
        if self.prompts is not None:
            W = np.asarray(self.prompts, dtype=np.float32)
            if W.ndim != 2 or W.shape[1] != g or not np.isfinite(W).all():
                raise PredictorError(
                    f"prompts must be a finite (dim, {g}) matrix, one column per genre, got "
                    f"shape {W.shape}; build it with prompt_matrix(encoder, genres, modality)."
                )
            return np.ascontiguousarray(W)
        if isinstance(self.encoder, str) and self.encoder:
            from embedgenre.encoders import create_encoder

            return prompt_matrix(create_encoder(self.encoder), self.classes_, self.modality)
        raise PredictorError(
            "Zero-shot needs a prompt matrix, or the registry name of an encoder with a text "
            f"side, got encoder {self.encoder!r}.",
            param="prompts",
        )

    def fit(self, X, Y=None, classes=None, X_val=None, Y_val=None) -> ZeroShotPredictor:
        """Build the prompt matrix and standardisation from ``X`` (n, d); ``Y`` is optional."""
        X = check_X(X)
        classes = classes if classes is not None else self.classes
        if Y is None and classes is None:
            raise PredictorError(
                "Zero-shot without labels needs the genre names;",
                "give the list of genres.",
                param="classes",
            )
        if self.temperature <= 0:
            raise PredictorError(f"temperature must be > 0, got {self.temperature}.")
        n_genres = len(classes) if Y is None else np.asarray(Y).shape[1]
        Y = None if Y is None else check_Y(Y, len(X))
        self._init_fitted(np.zeros((0, n_genres), np.uint8) if Y is None else Y, classes)
        self.W_ = self._prompt_matrix()
        if self.W_.shape[0] != X.shape[1]:
            raise PredictorError(
                f"The text side embeds in dimension {self.W_.shape[0]} but the embeddings have "
                f"dimension {X.shape[1]}; they are not in the same space."
            )
        S = X @ self.W_
        self.mean_ = S.mean(axis=0)
        self.std_ = np.maximum(S.std(axis=0), 1e-6)
        g = len(self.classes_)
        self.slope_ = np.full(g, 1.0 / self.temperature, dtype=np.float64)
        self.bias_ = np.full(g, -self.offset / self.temperature, dtype=np.float64)
        self.labelled_ = Y is not None
        if Y is not None and self.calibrate:
            self._platt(self._z(X), Y)
        return self

    def _platt(self, Z: np.ndarray, Y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        for j in range(Y.shape[1]):
            if 0 < Y[:, j].sum() < len(Y):
                lr = LogisticRegression(C=10.0).fit(Z[:, j : j + 1], Y[:, j])
                self.slope_[j] = lr.coef_[0, 0]
                self.bias_[j] = lr.intercept_[0]

    def _z(self, X: np.ndarray) -> np.ndarray:
        return (X @ self.W_ - self.mean_) / self.std_

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_X(X, self.W_.shape[0])
        return _sigmoid(self._z(X) * self.slope_ + self.bias_).astype(np.float32)

    @property
    def n_features_in_(self) -> int:
        return self.W_.shape[0]

    def _state(self):
        arrays = {"W": self.W_, "mean": self.mean_, "std": self.std_}
        arrays.update(slope=self.slope_, bias=self.bias_)
        return {"labelled": self.labelled_}, arrays

    def _load_state(self, meta, arrays):
        self.W_ = arrays["W"].astype(np.float32)
        self.mean_, self.std_ = arrays["mean"], arrays["std"]
        self.slope_, self.bias_ = arrays["slope"], arrays["bias"]
        self.labelled_ = bool(meta.get("labelled", False))
