"""Neighbour predictors over a FAISS inner-product index (cosine on L2-normalised vectors).

- :class:`KNNVotePredictor`: a genre's score is the similarity-weighted share of the k nearest
  training items that carry it.
- :class:`MLKNNPredictor`: ML-kNN (Zhang & Zhou 2007). For genre l and the count j of the k
  neighbours that carry it, Bayes' rule with smoothed prior P(H_l) and likelihoods P(E_j | H_l)
  estimated on the training set (each item's own entry excluded from its neighbours).
"""

from __future__ import annotations

import logging

import numpy as np

from embedgenre import ann
from embedgenre.errors import PredictorError
from embedgenre.predictors.base import GenrePredictor, check_X, check_Y, warn_empty_genres
from embedgenre.predictors.registry import register

logger = logging.getLogger(__name__)


def _check_k(k, n_available: int, during_fit: bool) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise PredictorError(f"k must be a positive integer, got {k!r}.", param="k")
    if k > n_available:
        where = (
            "items this fit holds other than the item itself"
            if during_fit
            else "items this fit holds"
        )
        raise PredictorError(
            f"k={k} is larger than the {n_available} {where};",
            f"choose k <= {n_available}, or label more items.",
            param="k",
        )
    return int(k)


def search(index, Q: np.ndarray, k: int, exclude_self: bool = False):
    """k nearest neighbours of ``Q`` (q, d): (similarities float32 (q, k), rows int64 (q, k)).

    With ``exclude_self`` the queries are the indexed rows themselves (row i = query i) and each
    query's own entry is removed, even when exact duplicates tie with it.
    """
    if not exclude_self:
        sims, rows = index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        return sims, rows
    sims, rows = index.search(np.ascontiguousarray(Q, dtype=np.float32), k + 1)
    own = rows == np.arange(len(Q))[:, None]
    # drop the item's own entry, or the last one when the item was pushed out by ties
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(Q)), drop] = False
    return sims[keep].reshape(len(Q), k), rows[keep].reshape(len(Q), k)


class _NeighbourBase(GenrePredictor):
    def _fit_index(self, X, Y, classes):
        X = check_X(X)
        Y = check_Y(Y, len(X))
        self._init_fitted(Y, classes)
        self.empty_genres_ = warn_empty_genres(Y, self.classes_)
        self.X_ = X
        self.Y_ = Y
        self.index_ = ann.flat_index(X)
        return X, Y

    def _neighbours(self, X):
        self._check_fitted()
        X = check_X(X, self.X_.shape[1])
        k = _check_k(self.k, len(self.X_), during_fit=False)
        return search(self.index_, X, k)

    @property
    def n_features_in_(self) -> int:
        return self.X_.shape[1]

    def shape_sizes(self) -> dict[str, int]:
        sizes = super().shape_sizes()
        k = getattr(self, "k", None)
        if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
            sizes["k1"] = k + 1
        return sizes

    def _base_state(self) -> dict[str, np.ndarray]:
        return {"X": self.X_, "Y": self.Y_}

    def _restore_base(self, arrays: dict[str, np.ndarray]) -> None:
        self.X_ = np.ascontiguousarray(arrays["X"], dtype=np.float32)
        self.Y_ = arrays["Y"].astype(np.uint8)
        self.empty_genres_ = self.Y_.sum(axis=0) == 0
        self.index_ = ann.flat_index(self.X_)


@register
class KNNVotePredictor(_NeighbourBase):
    """Similarity-weighted label voting among the ``k`` nearest training items.

    Score of genre l for a query = sum_j w_j y_jl / sum_j w_j, with w_j = max(cos_j, 0) ** power
    (plus a tiny floor so an all-dissimilar neighbourhood still votes evenly).
    """

    method = "knn"
    saved_arrays = {"X": ("n", "d"), "Y": ("n", "g")}

    def __init__(self, k: int = 20, power: float = 1.0, classes=None):
        self.k = k
        self.power = power
        self.classes = classes

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> KNNVotePredictor:
        X, _ = self._fit_index(X, Y, classes if classes is not None else self.classes)
        _check_k(self.k, len(X), during_fit=False)
        return self

    def predict_proba(self, X) -> np.ndarray:
        sims, rows = self._neighbours(X)
        w = np.maximum(sims, 0.0) ** float(self.power) + 1e-6
        votes = np.einsum("qk,qkg->qg", w, self.Y_[rows].astype(np.float32))
        return np.clip(votes / w.sum(axis=1, keepdims=True), 0.0, 1.0).astype(np.float32)

    def _state(self):
        return {}, self._base_state()

    def _load_state(self, meta, arrays):
        self._restore_base(arrays)


@register
class MLKNNPredictor(_NeighbourBase):
    """ML-kNN (Zhang & Zhou 2007) with ``k`` neighbours and Laplace smoothing ``s``.

    Fitted statistics: ``prior_`` (g,) = P(H1_l); ``cond_true_`` / ``cond_false_`` (g, k+1) =
    P(E_j | H1_l) / P(E_j | H0_l), j = number of the k neighbours carrying genre l.
    """

    method = "mlknn"
    saved_arrays = {
        "X": ("n", "d"),
        "Y": ("n", "g"),
        "prior": ("g",),
        "cond_true": ("g", "k1"),
        "cond_false": ("g", "k1"),
    }

    def __init__(self, k: int = 10, s: float = 1.0, classes=None):
        self.k = k
        self.s = s
        self.classes = classes

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None) -> MLKNNPredictor:
        X, Y = self._fit_index(X, Y, classes if classes is not None else self.classes)
        k = _check_k(self.k, len(X) - 1, during_fit=True)
        if self.s < 0:
            raise PredictorError(f"smoothing s must be >= 0, got {self.s}.")
        _, rows = search(self.index_, X, k, exclude_self=True)
        self._fit_statistics(rows)
        return self

    def _fit_statistics(self, rows: np.ndarray) -> None:
        """Prior and likelihood tables from each training item's neighbour rows (n, k)."""
        s, Y = float(self.s), self.Y_
        n, g = Y.shape
        k = rows.shape[1]
        counts = Y[rows].sum(axis=1, dtype=np.int64)  # (n, g): neighbours carrying l
        self.prior_ = ((s + Y.sum(axis=0)) / (2 * s + n)).astype(np.float64)
        # c[l, j]: items with genre l whose neighbours carry l exactly j times; c_not likewise
        flat = np.arange(g)[None, :] * (k + 1) + counts
        c = np.bincount(flat.ravel(), weights=Y.ravel(), minlength=g * (k + 1)).reshape(g, k + 1)
        c_all = np.bincount(flat.ravel(), minlength=g * (k + 1)).reshape(g, k + 1)
        c_not = c_all - c
        self.cond_true_ = (s + c) / (s * (k + 1) + c.sum(axis=1, keepdims=True))
        self.cond_false_ = (s + c_not) / (s * (k + 1) + c_not.sum(axis=1, keepdims=True))

    def predict_proba(self, X) -> np.ndarray:
        _, rows = self._neighbours(X)
        return self._posteriors(rows)

    def _posteriors(self, rows: np.ndarray) -> np.ndarray:
        """Posteriors (q, g) of queries whose neighbours are training rows ``rows`` (q, k)."""
        counts = self.Y_[rows].sum(axis=1, dtype=np.int64)  # (q, g)
        genre = np.arange(counts.shape[1])[None, :]
        p1 = self.prior_[None, :] * self.cond_true_[genre, counts]
        p0 = (1 - self.prior_[None, :]) * self.cond_false_[genre, counts]
        with np.errstate(invalid="ignore", divide="ignore"):
            post = np.where(p1 + p0 > 0, p1 / (p1 + p0), 0.0)
        return post.astype(np.float32)

    def _state(self):
        arrays = self._base_state()
        arrays.update(prior=self.prior_, cond_true=self.cond_true_, cond_false=self.cond_false_)
        return {}, arrays

    def _load_state(self, meta, arrays):
        self._restore_base(arrays)
        self.prior_ = arrays["prior"]
        self.cond_true_ = arrays["cond_true"]
        self.cond_false_ = arrays["cond_false"]


def reference_neighbours(X: np.ndarray, Q: np.ndarray | None, k: int) -> np.ndarray:
    """Brute-force k nearest rows of ``X`` (n, d) by cosine, one query at a time (slow; for tests
    and the benchmark). ``Q`` None: the training items themselves, each one's own row excluded.
    Ties are broken by the lower row. Returns rows int64 (q, k)."""
    X64 = np.asarray(X, dtype=np.float64)
    n = len(X64)
    queries = X64 if Q is None else np.asarray(Q, dtype=np.float64)
    out = np.zeros((len(queries), k), dtype=np.int64)
    for i, v in enumerate(queries):
        order = np.lexsort((np.arange(n), -(X64 @ v)))  # by similarity desc, then row
        own = i if Q is None else -1
        out[i] = [int(r) for r in order[: k + 1] if r != own][:k]
    return out


def reference_mlknn(
    X: np.ndarray,
    Y: np.ndarray,
    Q: np.ndarray,
    k: int,
    s: float,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Plain, loop-by-loop ML-kNN (slow; for tests and the benchmark). Returns posteriors (q, g).

    ``neighbours`` = (training items' neighbour rows (n, k), queries' neighbour rows (q, k));
    None computes them with :func:`reference_neighbours`. Giving the lists the fast path used
    makes the comparison about the ML-kNN statistics alone (no float32 near-ties).
    """
    n, g = Y.shape
    if neighbours is None:
        neighbours = (reference_neighbours(X, None, k), reference_neighbours(X, Q, k))
    train_nbrs, query_nbrs = neighbours
    prior = [(s + sum(int(Y[i][lab]) for i in range(n))) / (2 * s + n) for lab in range(g)]
    c = [[0] * (k + 1) for _ in range(g)]
    c_not = [[0] * (k + 1) for _ in range(g)]
    for i in range(n):
        nbrs = [int(r) for r in train_nbrs[i]]
        for lab in range(g):
            j = sum(int(Y[r][lab]) for r in nbrs)
            if Y[i][lab]:
                c[lab][j] += 1
            else:
                c_not[lab][j] += 1
    out = np.zeros((len(query_nbrs), g))
    for q in range(len(query_nbrs)):
        nbrs = [int(r) for r in query_nbrs[q]]
        for lab in range(g):
            j = sum(int(Y[r][lab]) for r in nbrs)
            like1 = (s + c[lab][j]) / (s * (k + 1) + sum(c[lab]))
            like0 = (s + c_not[lab][j]) / (s * (k + 1) + sum(c_not[lab]))
            num = prior[lab] * like1
            den = num + (1 - prior[lab]) * like0
            out[q, lab] = num / den if den > 0 else 0.0
    return out
