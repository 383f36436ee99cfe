"""The methods an evaluation compares, and the settings each is fitted with."""

from __future__ import annotations

from embedgenre.errors import EmbedgenreError
from embedgenre.predictors.registry import METHODS, make_predictor

__all__ = ["METHODS", "TRAINABLE", "evaluation_predictor"]

TRAINABLE: tuple[str, ...] = ("knn", "mlknn", "linear", "mlp")


def evaluation_predictor(
    method: str,
    n_train: int,
    seed: int,
    genres: list[str],
    encoder=None,
    prompt_modality: str = "poster",
    fusion: str | None = None,
    dims: tuple[int, int] | None = None,
):
    """A fresh, unfitted predictor of ``method`` sized for ``n_train`` training items; with
    ``fusion`` and ``dims``, the fusion head `embedgenre train --modality both` builds."""
    if method == "knn":
        params = {"k": max(1, min(20, n_train))}
    elif method == "mlknn":
        params = {"k": max(1, min(10, n_train - 1))}
    elif method == "linear":
        params = {}
    elif method == "mlp":
        params = {"seed": seed}
    elif method == "zeroshot":
        params = {"encoder": encoder, "modality": prompt_modality}
    else:
        raise EmbedgenreError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    if fusion is not None:
        return make_predictor(method, fusion=fusion, dims=dims, **params)
    return make_predictor(method, classes=genres, **params)
