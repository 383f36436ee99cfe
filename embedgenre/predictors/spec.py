"""What to train, as one value: :class:`HeadSpec`.

``embedgenre train`` and every row of ``embedgenre evaluate`` describe the model they fit as a
HeadSpec and call :meth:`HeadSpec.fit`, so the evaluation scores exactly the model a user ships:
the same estimator with the same defaults, the same threshold protocol
(:class:`~embedgenre.predictors.tuning.TunedThresholds`), the same refit on every training item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.names import FUSIONS, HEAD_MODALITIES
from embedgenre.predictors.registry import METHODS, make_predictor
from embedgenre.predictors.tuning import DEFAULT_FOLDS, TunedThresholds


@dataclass(frozen=True)
class HeadSpec:
    """A head to fit. ``modality``: "poster", "plot" or "both" (with ``fusion`` "early" or
    "late"); ``params``: the estimator's params (for "both": shared by the poster, plot and joint
    heads); ``folds``: thresholds on out-of-fold predictions of that many folds, or None for one
    validation part of ``val_size``; ``seed``: of the folds and of the MLP."""

    method: str
    modality: str = "poster"
    fusion: str | None = None
    params: dict = field(default_factory=dict)
    seed: int = 0
    folds: int | None = DEFAULT_FOLDS
    val_size: float = 0.2
    threshold: str = "per_genre"
    metric: str = "micro_f1"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PredictorError(
                f"Unknown method {self.method!r};",
                f"choose one of {', '.join(METHODS)}.",
                param="method",
            )
        if self.modality not in HEAD_MODALITIES:
            raise PredictorError(
                f"Unknown modality {self.modality!r};",
                f"choose one of {', '.join(HEAD_MODALITIES)}.",
                param="modality",
            )
        if self.modality == "both":
            if self.fusion is None:
                object.__setattr__(self, "fusion", "late")
            if self.fusion not in FUSIONS:
                raise PredictorError(
                    f"Unknown fusion {self.fusion!r};",
                    f"choose one of {', '.join(FUSIONS)}.",
                    param="fusion",
                )
            if self.method == "zeroshot" and self.fusion == "early":
                raise PredictorError(
                    "Zero-shot fuses poster and plot late only;", "use late fusion.", param="fusion"
                )
        elif self.fusion is not None:
            raise PredictorError(
                "A fusion applies to the modality 'both' only;",
                "leave it unset for one modality.",
                param="fusion",
            )

    @property
    def name(self) -> str:
        """The default head name: METHOD-MODALITY[-FUSION]."""
        return f"{self.method}-{self.modality}" + (f"-{self.fusion}" if self.fusion else "")

    def smallest_fit(self, n: int) -> int:
        """Rows of the smallest fit the threshold protocol makes on ``n`` training items."""
        held = math.ceil(n / self.folds) if self.folds else math.ceil(n * self.val_size)
        return max(1, n - held)

    def estimator(self, n_train: int, dims=None, prompts: dict | None = None):
        """The unfitted estimator for ``n_train`` training items. ``dims``: (d_poster, d_plot)
        for "both"; ``prompts``: modality -> prompt matrix, for zero-shot."""
        params = _sized_defaults(self.method, self.smallest_fit(n_train), self.seed)
        params.update(self.params)
        if self.method == "zeroshot":
            per = {m: {"prompts": prompts[m], "modality": m} for m in _need_prompts(self, prompts)}
            if self.modality != "both":
                params.update(per[self.modality])
            else:
                params.update(poster_params=per["poster"], plot_params=per["plot"])
        if self.modality == "both":
            return make_predictor(self.method, fusion=self.fusion, dims=dims, **params)
        return make_predictor(self.method, **params)

    def tuner(
        self, n_train: int, dims=None, prompts: dict | None = None, refit: bool = True
    ) -> TunedThresholds:
        """The estimator wrapped in the threshold protocol (``refit``: also fit on every row)."""
        return TunedThresholds(
            self.estimator(n_train, dims, prompts),
            cv=self.folds,
            val_size=self.val_size,
            refit=refit,
            mode=self.threshold,
            metric=self.metric,
            seed=self.seed,
        )

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        classes: list[str],
        dims=None,
        prompts: dict | None = None,
        validation: np.ndarray | None = None,
        refit: bool = True,
    ) -> TunedThresholds:
        """Fit on labelled rows (X, Y); ``validation``: row positions to hold out instead of
        folds. The fitted ``.estimator_`` carries the thresholds; ``.validation_`` the scores;
        ``.heldout_`` the held-out (rows, probabilities). ``refit=False`` skips the fit on every
        row (``.estimator_`` is then the first part's model)."""
        if self.folds is not None and validation is None:
            if len(X) < 2 * self.folds:
                raise PredictorError(
                    f"{len(X)} labelled items are too few for {self.folds} folds;",
                    f"use {max(2, len(X) // 2)} folds or fewer, or label more items.",
                    param="folds",
                )
        self._check_neighbours(len(X), validation)
        tuner = self.tuner(len(X), dims, prompts, refit)
        return tuner.fit(X, Y, classes=classes, validation=validation)

    def _check_neighbours(self, n: int, validation: np.ndarray | None) -> None:
        """A neighbour count no fit can meet is refused up front, with the counts it met: the
        labelled items, and the part of them each fit sees (the rest tunes the thresholds)."""
        k = self.params.get("k")
        if self.method not in ("knn", "mlknn") or not isinstance(k, (int, np.integer)):
            return
        fit = n - len(validation) if validation is not None else self.smallest_fit(n)
        most = fit - 1 if self.method == "mlknn" else fit  # ML-kNN leaves each item out
        if k > most:
            held = (
                f"{n - fit} held out for validation"
                if validation is not None or not self.folds
                else f"one of {self.folds} folds held out to tune the thresholds"
            )
            raise PredictorError(
                f"k={k} neighbours is more than a fit can draw on: {n} labelled items with "
                f"{self.modality} embeddings, of which each fit sees {fit} ({held}).",
                f"Choose k <= {most}.",
                param="k",
            )


def _sized_defaults(method: str, n_fit: int, seed: int) -> dict:
    """Defaults that depend on the data: neighbour counts no larger than the smallest fit."""
    if method == "knn":
        return {"k": max(1, min(20, n_fit))}
    if method == "mlknn":
        return {"k": max(1, min(10, n_fit - 1))}
    if method == "mlp":
        return {"seed": seed}
    return {}


def _need_prompts(spec: HeadSpec, prompts: dict | None) -> list[str]:
    wanted = ["poster", "plot"] if spec.modality == "both" else [spec.modality]
    missing = [m for m in wanted if not prompts or prompts.get(m) is None]
    if missing:
        raise PredictorError(
            f"Zero-shot needs the genre prompts embedded in the {' and '.join(missing)} "
            "embedding space;",
            "give a prompt matrix for each modality.",
            param="prompts",
        )
    return wanted
