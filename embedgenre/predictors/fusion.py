"""Poster + plot fusion over one concatenated input.

Input ``X`` is ``[poster | plot]`` (n, d_poster + d_plot); a block of zeros marks a missing
modality (real embeddings are L2-normalised, never zero).

- late: one head per modality; where both exist, ``w * p_poster + (1 - w) * p_plot`` with ``w``
  chosen on validation (best mAP); where one is missing, that modality's head alone.
- early: a head on the concatenated embeddings for items with both; items missing one modality
  fall back to that single modality's head.
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre.errors import PredictorError
from embedgenre.names import FUSIONS
from embedgenre.predictors.base import GenrePredictor, check_X, check_Y
from embedgenre.predictors.metrics import mean_average_precision
from embedgenre.predictors.registry import make_predictor, register
from embedgenre.predictors.state import (
    ARRAYS_FILE,
    HEAD_FILE,
    Unusable,
    check_description,
    is_count,
    is_number,
    part_arrays,
    predictor_from_state,
    predictor_state,
    prefixed,
    short,
)

logger = logging.getLogger(__name__)

WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 11), 2)

#: The heads a fused head may hold: one per modality, and the joint head of early fusion.
FUSION_PARTS = ("poster", "plot", "joint")


def choose_late_weight(P_poster: np.ndarray, P_plot: np.ndarray, Y: np.ndarray) -> float:
    """The poster weight ``w`` of ``w * P_poster + (1 - w) * P_plot`` with the best mAP against
    ``Y`` on :data:`WEIGHT_GRID` (ties: the weight nearest 0.5); 0.5 without rows."""
    if not len(Y):
        return 0.5
    scored = [
        (mean_average_precision(Y, w * P_poster + (1 - w) * P_plot), -abs(w - 0.5), w)
        for w in WEIGHT_GRID
    ]
    best = max(scored)
    logger.info("late fusion: poster weight %.1f (held-out mAP %.4f)", best[2], best[0])
    return float(best[2])


@register
class FusionPredictor(GenrePredictor):
    """Fuse a poster head and a plot head (``method`` for both, ``params`` shared, with
    ``poster_params`` / ``plot_params`` overrides). ``dims`` = (d_poster, d_plot)."""

    method = "fusion"
    tuple_params = ("dims",)

    def __init__(
        self,
        base: str = "linear",
        fusion: str = "late",
        dims=None,
        params: dict | None = None,
        poster_params: dict | None = None,
        plot_params: dict | None = None,
        weight: float | None = None,
        classes=None,
    ):
        self.base = base
        self.fusion = fusion
        self.dims = dims
        self.params = params
        self.poster_params = poster_params
        self.plot_params = plot_params
        self.weight = weight
        self.classes = classes

    def _split(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        dp, dt = self.dims_
        X = check_X(X, dp + dt)
        Xp, Xt = X[:, :dp], X[:, dp:]
        return Xp, Xt, np.abs(Xp).sum(axis=1) > 0, np.abs(Xt).sum(axis=1) > 0

    def _part(self, which: str):
        extra = self.poster_params if which == "poster" else self.plot_params
        if which == "joint" and self.base == "zeroshot":
            raise PredictorError(
                "Early fusion concatenates embeddings, which has no text side;",
                "use late fusion with zero-shot, or a trained method with early fusion.",
                param="fusion",
            )
        params = dict(self.params or {})
        if which != "joint":
            params.update(extra or {})
        return make_predictor(self.base, **params)

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> FusionPredictor:
        if self.fusion not in FUSIONS:
            raise PredictorError(
                f"Unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}."
            )
        if self.dims is None or len(self.dims) != 2:
            raise PredictorError("FusionPredictor needs dims=(poster_dim, plot_dim).")
        self.dims_ = (int(self.dims[0]), int(self.dims[1]))
        Xp, Xt, hp, ht = self._split(X)
        Y = check_Y(Y, len(Xp))
        self._init_fitted(Y, classes if classes is not None else self.classes)
        val = None
        if X_val is not None:
            val = self._split(X_val) + (check_Y(Y_val, len(X_val)),)
        self.parts_: dict[str, GenrePredictor] = {}
        for which, mask, Xm in (("poster", hp, Xp), ("plot", ht, Xt)):
            if mask.sum() == 0:
                continue
            v = None if val is None else (val[0] if which == "poster" else val[1])
            vmask = None if val is None else (val[2] if which == "poster" else val[3])
            self.parts_[which] = self._part(which).fit(
                Xm[mask],
                Y[mask],
                classes=self.classes_,
                X_val=None if v is None else v[vmask],
                Y_val=None if v is None else val[4][vmask],
            )
        both = hp & ht
        if self.fusion == "early" and both.any():
            Xj = np.concatenate([Xp[both], Xt[both]], axis=1)
            Xjv = Yjv = None
            if val is not None:
                vb = val[2] & val[3]
                Xjv, Yjv = np.concatenate([val[0][vb], val[1][vb]], axis=1), val[4][vb]
            self.parts_["joint"] = self._part("joint").fit(
                Xj, Y[both], classes=self.classes_, X_val=Xjv, Y_val=Yjv
            )
        self.weight_ = 0.5 if self.weight is None else float(self.weight)
        if self.fusion == "late" and self.weight is None and val is not None:
            self.weight_ = self._choose_weight(*val)
        return self

    # which constructor param carries each part's params
    _PART_PARAMS = {"poster": "poster_params", "plot": "plot_params", "joint": "params"}

    def chosen_params(self) -> dict:
        """What the validation rows chose: the late-fusion weight (unless given) and each
        part's own choices (an MLP part's epochs) as that part's params."""
        out = {}
        for which, part in self.parts_.items():
            chosen = part.chosen_params()
            if chosen:
                key = self._PART_PARAMS[which]
                out[key] = {**(getattr(self, key) or {}), **chosen}
        if self.fusion == "late" and self.weight is None:
            out["weight"] = float(self.weight_)
        return out

    def pool_chosen(self, folds) -> dict:
        """The parts' choices pooled as medians; the late-fusion weight chosen once on every
        fold's held-out poster and plot probabilities (and adopted by each fold's model)."""
        out = super().pool_chosen(folds)
        if self.fusion == "late" and self.weight is None:
            posters, plots, labels = [], [], []
            for model, X_val, Y_val in folds:
                pp, pt, both = model.part_probas(X_val)
                posters.append(pp[both])
                plots.append(pt[both])
                labels.append(np.asarray(Y_val)[both])
            w = choose_late_weight(
                np.concatenate(posters), np.concatenate(plots), np.concatenate(labels)
            )
            for model, _, _ in folds:
                model.weight_ = w
            out["weight"] = w
        return out

    def _choose_weight(self, Xp, Xt, hp, ht, Y) -> float:
        both = hp & ht
        if not both.any() or len(self.parts_) < 2:
            return 0.5
        pp = self.parts_["poster"].predict_proba(Xp[both])
        pt = self.parts_["plot"].predict_proba(Xt[both])
        return choose_late_weight(pp, pt, Y[both])

    def part_probas(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The poster head's and the plot head's probabilities (zeros where an input or a head
        is missing) and the rows that have both."""
        self._check_fitted()
        Xp, Xt, hp, ht = self._split(X)
        out = []
        for which, mask, Xm in (("poster", hp, Xp), ("plot", ht, Xt)):
            P = np.zeros((len(Xp), len(self.classes_)), dtype=np.float32)
            if mask.any() and which in self.parts_:
                P[mask] = self.parts_[which].predict_proba(Xm[mask])
            out.append(P)
        both = hp & ht & ("poster" in self.parts_) & ("plot" in self.parts_)
        return out[0], out[1], both

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        Xp, Xt, hp, ht = self._split(X)
        if not (hp | ht).all():
            raise PredictorError(
                "Some rows have neither a poster nor a plot embedding (all zeros)."
            )
        P = np.zeros((len(Xp), len(self.classes_)), dtype=np.float32)
        both = hp & ht
        for which, mask, Xm in (("poster", hp & ~ht, Xp), ("plot", ht & ~hp, Xt)):
            if mask.any():
                P[mask] = self._require(which).predict_proba(Xm[mask])
        if both.any():
            if self.fusion == "early" and "joint" in self.parts_:
                P[both] = self.parts_["joint"].predict_proba(
                    np.concatenate([Xp[both], Xt[both]], 1)
                )
            elif "poster" in self.parts_ and "plot" in self.parts_:
                w = self.weight_
                P[both] = w * self.parts_["poster"].predict_proba(Xp[both]) + (1 - w) * self.parts_[
                    "plot"
                ].predict_proba(Xt[both])
            else:
                only = next(iter(self.parts_))
                P[both] = self.parts_[only].predict_proba(
                    Xp[both] if only == "poster" else Xt[both]
                )
        return P

    def _require(self, which: str) -> GenrePredictor:
        if which not in self.parts_:
            raise PredictorError(
                f"This fused head was trained without {which} embeddings and cannot score "
                f"items that have only a {which}."
            )
        return self.parts_[which]

    # -- saved state: dims, weight and each part's own description; a part's arrays under
    # "<part>/"
    @classmethod
    def check_saved_state(cls, state: dict, classes: list[str], at: str) -> None:
        dims, weight, parts = state.get("dims"), state.get("weight"), state.get("parts")
        if not (isinstance(dims, list) and len(dims) == 2 and all(is_count(d) for d in dims)):
            raise Unusable(
                HEAD_FILE,
                f"'{at}.dims' is {short(dims)}, expected [poster dimension, plot dimension]",
            )
        if not (is_number(weight) and 0 <= weight <= 1):
            raise Unusable(
                HEAD_FILE, f"'{at}.weight' is {short(weight)}, expected a number from 0 to 1"
            )
        if not (isinstance(parts, dict) and parts and set(parts) <= set(FUSION_PARTS)):
            raise Unusable(
                HEAD_FILE,
                f"'{at}.parts' is {short(parts)}, expected an object with some of "
                f"{', '.join(FUSION_PARTS)}",
            )
        for which, part in parts.items():
            check_description(part, f"{at}.parts.{which}")
            if part["method"] == "fusion":
                raise Unusable(HEAD_FILE, f"'{at}.parts.{which}' is itself a fused head")
            if part["classes"] != classes:
                raise Unusable(
                    HEAD_FILE,
                    f"'{at}.parts.{which}.classes' differs from the classes of the fused head",
                )

    @classmethod
    def saved_parts(cls, state: dict) -> dict[str, dict]:
        return state["parts"]

    @property
    def n_features_in_(self) -> int:
        return int(sum(self.dims_))

    def check_restored(self) -> None:
        """Each part takes the width of its slice of ``[poster | plot]``."""
        dp, dt = self.dims_
        for which, part in self.parts_.items():
            want = {"poster": dp, "plot": dt, "joint": dp + dt}[which]
            if part.n_features_in_ != want:
                raise Unusable(
                    ARRAYS_FILE,
                    f"the {which} part takes {part.n_features_in_}-d input but 'state.dims' "
                    f"{[dp, dt]} gives it {want}",
                )

    def _state(self):
        meta = {"dims": list(self.dims_), "weight": self.weight_, "parts": {}}
        arrays = {}
        for which, part in self.parts_.items():
            meta["parts"][which], part_state = predictor_state(part)
            arrays.update(prefixed(which, part_state))
        return meta, arrays

    def _load_state(self, meta, arrays):
        self.dims_ = tuple(meta["dims"])
        self.weight_ = float(meta["weight"])
        self.parts_ = {
            which: predictor_from_state(part, part_arrays(arrays, which))
            for which, part in meta["parts"].items()
        }
