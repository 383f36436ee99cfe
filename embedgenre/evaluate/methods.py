"""The methods an evaluation compares, and the settings each is fitted with."""

from __future__ import annotations

from embedgenre.errors import EmbedgenreError

METHODS: tuple[str, ...] = ("zeroshot", "knn", "mlknn", "linear", "mlp")
TRAINABLE: tuple[str, ...] = ("knn", "mlknn", "linear", "mlp")


def make_predictor(
    method: str,
    n_train: int,
    seed: int,
    genres: list[str],
    encoder=None,
    prompt_modality: str = "poster",
):
    """A fresh, unfitted predictor of ``method`` sized for ``n_train`` training items."""
    from embedgenre.predictors import make_predictor as make

    if method == "knn":
        return make("knn", k=max(1, min(20, n_train)), classes=genres)
    if method == "mlknn":
        return make("mlknn", k=max(1, min(10, n_train - 1)), classes=genres)
    if method == "linear":
        return make("linear", classes=genres)
    if method == "mlp":
        return make("mlp", seed=seed, classes=genres)
    if method == "zeroshot":
        return make("zeroshot", encoder=encoder, modality=prompt_modality, classes=genres)
    raise EmbedgenreError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
