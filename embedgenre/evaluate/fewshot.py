"""Few-shot training samples: k labelled examples per genre from a multi-label training set.

How a k-per-genre sample is drawn (multi-label makes "k per class" ambiguous, so this is the rule):

1. Visit the genres from the rarest to the most frequent (in the training rows given).
2. For each genre, count the movies already in the sample that carry it. While the count is below
   ``k`` (or below the genre's training count, if that is smaller), add a movie carrying the genre,
   drawn at random (seeded) from those not yet sampled.
3. Every genre then has at least ``min(k, its training count)`` examples; common genres usually
   have more, because movies picked for rare genres carry them too. That is the label distribution
   a person labelling "k posters per genre" would end up with.

``k = None`` ("all") returns every training row.

:func:`fewshot_curve` fits each trainable method on such samples (several seeds per k) the way
``embedgenre train`` would on that many labelled movies: the same
:class:`~embedgenre.predictors.spec.HeadSpec` with its thresholds tuned out-of-fold (fewer folds
when the sample is small), then scores it on the test items. The ``k = "all"`` point is the main
table's row itself, so one model has one number.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from embedgenre.errors import BadInputError, EmbedgenreError
from embedgenre.evaluate.metrics import summary_metrics
from embedgenre.evaluate.scoring import Output
from embedgenre.names import TRAINABLE
from embedgenre.predictors.spec import HeadSpec

logger = logging.getLogger(__name__)


def parse_shots(text: str) -> list[int | None]:
    """Parse ``"1,2,4,all"`` into ``[1, 2, 4, None]`` (None = all training data), sorted, unique."""
    values: list[int | None] = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            values.append(None)
            continue
        try:
            k = int(part)
        except ValueError:
            raise BadInputError(
                f"Bad shot count {part!r} in {text!r};",
                "use positive integers and 'all', e.g. 1,2,4,8,16,32,all.",
                param="shots",
            ) from None
        if k < 1:
            raise BadInputError(
                f"Shot counts must be >= 1 (k = 0 is zero-shot, drawn anyway); got {k}.",
                param="shots",
            )
        values.append(k)
    ints = sorted({v for v in values if v is not None})
    return ints + ([None] if None in values else [])


def sample_k_per_genre(Y: np.ndarray, k: int | None, seed: int = 0) -> np.ndarray:
    """Rows of ``Y`` (n, g) 0/1 forming a k-per-genre sample (see module doc); sorted int64."""
    Y = np.asarray(Y)
    n = Y.shape[0]
    if k is None:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    counts = Y.sum(axis=0)
    chosen = np.zeros(n, dtype=bool)
    have = np.zeros(Y.shape[1], dtype=np.int64)
    for g in np.argsort(counts, kind="stable"):
        need = min(k, int(counts[g])) - int(have[g])
        if need <= 0:
            continue
        pool = np.flatnonzero((Y[:, g] > 0) & ~chosen)
        picked = rng.choice(pool, size=min(need, pool.size), replace=False)
        chosen[picked] = True
        have += Y[picked].sum(axis=0).astype(np.int64)
    return np.flatnonzero(chosen).astype(np.int64)


def sample_spec(spec: HeadSpec, n: int) -> HeadSpec:
    """``spec`` for a sample of ``n`` items: at most ``n // 2`` folds (at least 2)."""
    if spec.folds is None:
        return spec
    return dataclasses.replace(spec, folds=max(2, min(spec.folds, n // 2)))


def fewshot_curve(
    view,
    pool: np.ndarray,
    test_rows: np.ndarray,
    Y: np.ndarray,
    genres: list[str],
    methods: Sequence[str],
    shots: Sequence[int | None],
    n_seeds: int,
    spec_of: Callable[[str, int], HeadSpec],
    fitted: dict[str, Output],
    log: Callable[[str], None] = logger.info,
) -> list[dict]:
    """Few-shot rows of one embedding set ``view`` (an EmbeddingView).

    ``pool``: the training items with a vector in ``view`` (samples are drawn from them);
    ``test_rows``: the test items with one; ``Y``: every item's labels. ``spec_of(method, s)``:
    the spec of the main table's row for sample seed ``s``. ``fitted``: the main table's test
    outputs on ``test_rows``, by method: "zeroshot" gives the k = 0 point and a trainable
    method's is its k = "all" point.
    """
    X_test = view.matrix(test_rows)
    Y_test = Y[test_rows]

    def row(method: str, k: int | None, s: int, n_train: int, D, P) -> dict:
        m = summary_metrics(Y_test, D, P)
        return {
            "method": method,
            "modality": view.modality,
            "encoder": view.encoder,
            "k": "all" if k is None else int(k),
            "seed": int(s),
            "n_train": int(n_train),
            "micro_f1": m["micro_f1"],
            "macro_f1": m["macro_f1"],
            "map": m["map"],
        }

    rows = []
    if "zeroshot" in fitted:
        rows.append(row("zeroshot", 0, 0, 0, fitted["zeroshot"].D, fitted["zeroshot"].P))
    for method in [m for m in methods if m in TRAINABLE]:
        for k in shots:
            if k is None:
                if method in fitted:
                    out = fitted[method]
                    rows.append(row(method, None, 0, len(pool), out.D, out.P))
                continue
            for s in range(n_seeds):
                spec = spec_of(method, s)
                sample = pool[sample_k_per_genre(Y[pool], k, seed=spec.seed)]
                log(f"few-shot {method} · {view.modality} · k={k} seed {s} ({len(sample)} items)")
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        tuned = sample_spec(spec, len(sample)).fit(
                            view.matrix(sample), Y[sample], genres
                        )
                except EmbedgenreError as e:
                    logger.warning("few-shot %s k=%s failed: %s", method, k, e)
                    continue
                P = np.asarray(tuned.predict_proba(X_test), dtype=np.float64)
                rows.append(row(method, k, s, len(sample), tuned.predict(X_test), P))
    return rows
