"""Ranking: the k best items for one query held as one :class:`Source` per modality.

Steps 2 to 5 of the package docstring: fetch candidates from each modality's search, re-score them
exactly from the stored vectors, fuse the modalities' scores, walk them best first (skipping the
query, applying the filters, folding duplicates), and fetch more while an unseen item could still
beat the last result. Pure: no index, no files, no encoders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from embedgenre.errors import RetrievalError

logger = logging.getLogger(__name__)


# Poster cosine at or above which two posters count as the same image. Measured with
# EfficientNet-Lite0 on the shared posters: JPEG re-encodes score >= 0.99 (quality 95), >= 0.96
# (quality 85), 0.92-0.99 (quality 75, 93% above 0.95); the closest two distinct posters of 6,274
# score 0.867. Other encoders spread cosines differently: tune with --dedup-threshold.
DEFAULT_DEDUP_THRESHOLD = 0.95
DEFAULT_PLOT_WEIGHT = 0.5


@dataclass
class Source:
    """One modality taking part in a query.

    ``rows`` (m,) item rows of ``vectors`` (m, d); ``search(queries (1, d), k)`` returns
    (scores, item rows) with -inf / -1 for missing; ``query`` (d,) the query vector; ``mean`` and
    ``std`` the cosine statistics of random pairs used to put modalities on one scale.
    """

    name: str
    rows: np.ndarray
    vectors: np.ndarray
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    query: np.ndarray | None
    weight: float = 1.0
    mean: float = 0.0
    std: float = 1.0
    positions: np.ndarray | None = None  # position_of's answer, when the caller keeps it

    def position_of(self, n_items: int) -> np.ndarray:
        """int64 (n_items,): position of each item in ``vectors``, -1 where it has none."""
        if self.positions is not None and len(self.positions) == n_items:
            return self.positions
        return positions_of(self.rows, n_items)


def positions_of(rows: np.ndarray, n_items: int) -> np.ndarray:
    """int64 (n_items,): where each item is in a set whose vectors belong to ``rows``, or -1."""
    pos = np.full(n_items, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    return pos


@dataclass
class Hit:
    row: int
    score: float
    cosines: dict[str, float | None]
    duplicates: list[int] = field(default_factory=list)


def check_k(k: int) -> None:
    """Refuse a ``k`` below 1: every query asks for at least one result."""
    if k < 1:
        raise RetrievalError(f"k must be at least 1, got {k}.", param="k")


def rank(
    sources: Sequence[Source],
    n_items: int,
    k: int,
    *,
    keep: np.ndarray | None = None,
    exclude: Sequence[int] = (),
    dedup: Source | None = None,
    dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD,
    fetch: int | None = None,
) -> list[Hit]:
    """The ``k`` best items for the query held by ``sources`` (see the package docstring).

    ``keep`` bool (n_items,): items the filters allow. ``exclude``: item rows never returned (the
    query itself). ``dedup``: the poster source used for duplicate folding and for dropping
    near-copies of the query (its ``query`` may be None when the query has no poster).
    """
    check_k(k)
    active = [s for s in sources if s.weight > 0 and len(s.rows)]
    if not active:
        return []
    fuse = len(active) > 1
    pos = {s.name: s.position_of(n_items) for s in active}
    dpos = dedup.position_of(n_items) if dedup is not None else None
    excluded = np.zeros(n_items, dtype=bool)
    excluded[list(exclude)] = True
    if keep is not None:
        excluded |= ~keep
    largest = max(len(s.rows) for s in active)
    fetch = min(largest, fetch or max(2 * k + len(exclude) + 8, 32))
    walk = _Walk(k=k, excluded=excluded, threshold=dedup_threshold)

    while True:
        seen, open_bounds = _fetch(active, fetch, fuse)
        walk.bound = _unseen_bound(open_bounds)
        cand = _rescore(active, pos, seen, fuse)
        posters = _poster_cosines(cand.rows, dedup, dpos) if dedup is not None else None
        hits = _accept(cand, posters, walk)
        if len(hits) == k or not open_bounds:
            return hits
        fetch = min(largest, fetch * 4)
        logger.debug("%d of %d results after filters; fetching %d candidates", len(hits), k, fetch)


def _fetch(
    active: Sequence[Source], fetch: int, fuse: bool
) -> tuple[set[int], list[tuple[Source, float]]]:
    """Ask each source for ``fetch`` candidates: the item rows seen, and (source, score of its last
    candidate) for each source that still has items it did not return."""
    seen, open_bounds = set(), []
    for s in active:
        want = min(fetch, len(s.rows))
        scores, rows = s.search(s.query[None, :].astype(np.float32), want)
        valid = rows[0] >= 0
        seen.update(rows[0][valid].tolist())
        # an approximate index may return fewer than asked: then it has nothing more to give
        if want < len(s.rows) and valid.sum() == want:
            last = float(scores[0][valid][-1])
            open_bounds.append((s, (last - s.mean) / s.std if fuse else last))
    return seen, open_bounds


@dataclass
class _Candidates:
    """One round's candidates, re-scored exactly: ``rows`` (c,) item rows, ascending; ``score``
    (c,) their scores; ``cosines`` per source (c,), NaN where an item has no vector; ``order``
    positions best first, ties by row."""

    rows: np.ndarray
    score: np.ndarray
    cosines: dict[str, np.ndarray]
    order: np.ndarray


def _rescore(
    active: Sequence[Source], pos: dict[str, np.ndarray], seen: set[int], fuse: bool
) -> _Candidates:
    """Exact cosines of every candidate in ``seen`` from the stored vectors, and their scores."""
    cand = np.fromiter(sorted(seen), dtype=np.int64, count=len(seen))
    cos = {}
    for s in active:
        p = pos[s.name][cand]
        c = np.full(len(cand), np.nan, dtype=np.float64)
        has = p >= 0
        c[has] = np.asarray(s.vectors[p[has]], dtype=np.float64) @ s.query.astype(np.float64)
        cos[s.name] = c
    score = _combine(active, cos, fuse)
    return _Candidates(cand, score, cos, np.lexsort((cand, -score)))


def _combine(active: Sequence[Source], cos: dict[str, np.ndarray], fuse: bool) -> np.ndarray:
    """Cosine (one source) or weighted Stouffer z over the sources each item has."""
    if not fuse:
        return cos[active[0].name]
    num = 0.0
    den2 = 0.0
    for s in active:
        c = cos[s.name]
        has = ~np.isnan(c)
        num = num + np.where(has, s.weight * (np.nan_to_num(c) - s.mean) / s.std, 0.0)
        den2 = den2 + np.where(has, s.weight**2, 0.0)
    return num / np.sqrt(den2)


def _unseen_bound(open_bounds: list[tuple[Source, float]]) -> float:
    """Highest score an item missing from every fetched list could have.

    ``open_bounds``: (source, score of its last fetched candidate) for each source with items left
    unfetched; such an item has, in each of those sources, at most that score, and no entry in the
    others. With one source the bound is its last score; fused, the best Stouffer combination over
    every non-empty subset of the open sources.
    """
    if not open_bounds:
        return -np.inf
    if len(open_bounds) == 1:
        return open_bounds[0][1]
    best = -np.inf
    for mask in range(1, 2 ** len(open_bounds)):
        chosen = [open_bounds[i] for i in range(len(open_bounds)) if mask >> i & 1]
        num = sum(s.weight * z for s, z in chosen)
        best = max(best, num / np.sqrt(sum(s.weight**2 for s, _ in chosen)))
    return best


@dataclass
class _PosterCosines:
    """The candidates' posters against each other and the query poster: ``has`` (c,) whether a
    candidate has a poster vector; ``pair`` (c, c) and ``to_query`` (c,) their cosines (-inf to
    the query when it has no poster)."""

    has: np.ndarray
    pair: np.ndarray
    to_query: np.ndarray


def _poster_cosines(cand: np.ndarray, dedup: Source, dpos: np.ndarray) -> _PosterCosines:
    """Every candidate's poster vector read at once (a query answers in a few milliseconds only
    if it reads them once), and their cosines."""
    where = dpos[cand]
    has_vec = where >= 0
    vecs = np.zeros((len(cand), dedup.vectors.shape[1]), dtype=np.float64)
    vecs[has_vec] = np.asarray(dedup.vectors[where[has_vec]], dtype=np.float64)
    to_query = (
        vecs @ dedup.query.astype(np.float64)
        if dedup.query is not None
        else np.full(len(cand), -np.inf)
    )
    return _PosterCosines(has_vec, vecs @ vecs.T, to_query)


@dataclass
class _Walk:
    """What the walk over candidates stops and skips on: ``k`` results; ``bound``, the best score
    an unfetched item could have; ``excluded`` bool (n_items,), the query and filtered-out items;
    ``threshold``, the poster cosine from which two posters are one image."""

    k: int
    excluded: np.ndarray
    threshold: float
    bound: float = -np.inf


def _accept(cand: _Candidates, posters: _PosterCosines | None, walk: _Walk) -> list[Hit]:
    """Walk candidates best first: skip excluded, fold duplicates, stop at k or the bound."""
    hits: list[Hit] = []
    has_vec = posters.has if posters is not None else np.zeros(len(cand.rows), dtype=bool)
    kept: list[int] = []  # candidate positions of the hits that have a poster vector
    kept_hit: list[Hit] = []
    for i in cand.order:
        if cand.score[i] < walk.bound or len(hits) == walk.k:
            break
        row = int(cand.rows[i])
        if walk.excluded[row]:
            continue
        if has_vec[i]:
            if posters.to_query[i] >= walk.threshold:
                continue  # the query poster itself, re-encoded or under another id
            if kept:
                sims = posters.pair[i, kept]
                j = int(np.argmax(sims))
                if sims[j] >= walk.threshold:
                    kept_hit[j].duplicates.append(row)
                    continue
        cosines = {n: (None if np.isnan(c[i]) else float(c[i])) for n, c in cand.cosines.items()}
        hit = Hit(row=row, score=float(cand.score[i]), cosines=cosines)
        hits.append(hit)
        if has_vec[i]:
            kept.append(i)
            kept_hit.append(hit)
    return hits


def pair_statistics(vectors: np.ndarray, sample: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the cosine between distinct random pairs of ``vectors``."""
    n = len(vectors)
    if n < 2:
        return 0.0, 1.0
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    x = np.asarray(vectors[rows], dtype=np.float64)
    gram = x @ x.T
    off = gram[~np.eye(len(x), dtype=bool)]
    return float(off.mean()), float(max(off.std(), 1e-6))
