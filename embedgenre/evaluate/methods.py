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
):
    """A fresh, unfitted predictor of ``method`` sized for ``n_train`` training items."""
    if method == "knn":
        return make_predictor("knn", k=max(1, min(20, n_train)), classes=genres)
    if method == "mlknn":
        return make_predictor("mlknn", k=max(1, min(10, n_train - 1)), classes=genres)
    if method == "linear":
        return make_predictor("linear", classes=genres)
    if method == "mlp":
        return make_predictor("mlp", seed=seed, classes=genres)
    if method == "zeroshot":
        return make_predictor("zeroshot", encoder=encoder, modality=prompt_modality, classes=genres)
    raise EmbedgenreError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
