"""Similar posters and text search over a GenreIndex.

How a query is answered
-----------------------
1. The query becomes one vector per modality: an indexed item's stored poster/plot embeddings
   (``--id``), a poster file encoded by the encoder that built the poster set, or a text encoded by
   a text tower (CLIP's when the poster set is CLIP, otherwise the plot encoder's).
2. Each modality's FAISS index is asked for ``fetch`` candidates; the union is re-scored exactly
   from the stored vectors (so an approximate index only decides which candidates are seen).
3. Score. One modality: the cosine. ``by="both"``: each cosine is standardised against the
   cosines of random pairs in its own embedding set, ``z = (cos - mean) / std`` (the encoders'
   cosines live on different scales: EfficientNet posters ~0.39 +- 0.09, MiniLM plots
   ~0.15 +- 0.09), and the z's are combined as a weighted Stouffer score
   ``(a * z_poster + b * z_plot) / sqrt(a^2 + b^2)`` with ``a = 1 - plot_weight``,
   ``b = plot_weight`` (default 0.5 each). For random pairs this is again a standard z-score, so an
   item with only a poster (or only a plot) competes on the same scale with its single z; one
   whose poster and plot both agree with the query scores higher than either alone. A query
   without a plot falls back to posters alone. (On the shared posters, queries with a plot, this
   fusion reaches 1.48x the random genre-overlap precision@10, posters alone 1.32x, plots alone
   1.39x; a plain weighted mean of the z's, where a poster-only item keeps its undiluted z, got
   ~1.35x in a trial on 800 queries. See benchmarks/retrieval.py.)
4. Candidates are taken in score order: the query itself is skipped (same row, or a poster whose
   cosine with the query poster is at least ``dedup_threshold``), genre filters are applied, and a
   candidate whose poster has cosine >= ``dedup_threshold`` with an already accepted result is
   folded into it as a duplicate (same image re-encoded) rather than shown again.
5. If fewer than ``k`` results survive while some unseen item could still score higher (its score
   is bounded by the lowest fetched score of each modality), ``fetch`` grows 4x and the search runs
   again, so filters never cost results. Missing neighbours (FAISS id -1, score -inf) are dropped.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedgenre import ann
from embedgenre.catalog import plot_text
from embedgenre.encoders import load_set_encoder
from embedgenre.errors import NoSuchPosterError, RetrievalError, UnknownItemError
from embedgenre.names import BY_CHOICES
from embedgenre.store import GenreIndex, atomic

logger = logging.getLogger(__name__)

# Poster cosine at or above which two posters count as the same image. Measured with
# EfficientNet-Lite0 on the shared posters: JPEG re-encodes score >= 0.99 (quality 95), >= 0.96
# (quality 85), 0.92-0.99 (quality 75, 93% above 0.95); the closest two distinct posters of 6,274
# score 0.867. Other encoders spread cosines differently: tune with --dedup-threshold.
DEFAULT_DEDUP_THRESHOLD = 0.95
DEFAULT_PLOT_WEIGHT = 0.5


# ------------------------------------------------------------------------------ core ranking


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
    """The ``k`` best items for the query held by ``sources`` (see the module docstring).

    ``keep`` bool (n_items,): items the filters allow. ``exclude``: item rows never returned (the
    query itself). ``dedup``: the poster source used for duplicate folding and for dropping
    near-copies of the query (its ``query`` may be None when the query has no poster).
    """
    if k < 1:
        raise RetrievalError(f"k must be at least 1, got {k}.", param="k")
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

    while True:
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
        bound = _unseen_bound(open_bounds)
        cand = np.fromiter(sorted(seen), dtype=np.int64, count=len(seen))
        cos = {}
        for s in active:
            p = pos[s.name][cand]
            c = np.full(len(cand), np.nan, dtype=np.float64)
            has = p >= 0
            c[has] = np.asarray(s.vectors[p[has]], dtype=np.float64) @ s.query.astype(np.float64)
            cos[s.name] = c
        score = _combine(active, cos, fuse)
        order = np.lexsort((cand, -score))
        hits = _accept(cand, score, cos, order, k, bound, excluded, dedup, dpos, dedup_threshold)
        if len(hits) == k or not open_bounds:
            return hits
        fetch = min(largest, fetch * 4)
        logger.debug("%d of %d results after filters; fetching %d candidates", len(hits), k, fetch)


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


def _accept(cand, score, cos, order, k, bound, excluded, dedup, dpos, threshold) -> list[Hit]:
    """Walk candidates best first: skip excluded, fold duplicates, stop at k or the bound."""
    hits: list[Hit] = []
    # the poster vectors of every candidate, read at once, and their cosines to each other and
    # to the query poster (a query answers in a few milliseconds only if it reads them once)
    has_vec = np.zeros(len(cand), dtype=bool)
    if dpos is not None:
        where = dpos[cand]
        has_vec = where >= 0
        vecs = np.zeros((len(cand), dedup.vectors.shape[1]), dtype=np.float64)
        vecs[has_vec] = np.asarray(dedup.vectors[where[has_vec]], dtype=np.float64)
        pair = vecs @ vecs.T
        to_query = (
            vecs @ dedup.query.astype(np.float64)
            if dedup.query is not None
            else np.full(len(cand), -np.inf)
        )
    kept: list[int] = []  # candidate positions of the hits that have a poster vector
    kept_hit: list[Hit] = []
    for i in order:
        if score[i] < bound or len(hits) == k:
            break
        row = int(cand[i])
        if excluded[row]:
            continue
        if has_vec[i]:
            if to_query[i] >= threshold:
                continue  # the query poster itself, re-encoded or under another id
            if kept:
                sims = pair[i, kept]
                j = int(np.argmax(sims))
                if sims[j] >= threshold:
                    kept_hit[j].duplicates.append(row)
                    continue
        cosines = {name: (None if np.isnan(c[i]) else float(c[i])) for name, c in cos.items()}
        hit = Hit(row=row, score=float(score[i]), cosines=cosines)
        hits.append(hit)
        if has_vec[i]:
            kept.append(i)
            kept_hit.append(hit)
    return hits


def rank_all_exact(
    source: Source,
    queries: np.ndarray,
    n_items: int,
    k: int,
    *,
    dedup: Source | None = None,
    dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD,
    batch_size: int = 2048,
) -> tuple[list[list[Hit]], int]:
    """:func:`rank` for many queries of one source whose ``search`` is exact (a flat index),
    with no filters: each query is the stored vector of its item row in ``queries``, which is
    excluded from its own answer. Gives the hits :func:`rank` gives, query by query.

    ``dedup`` is None (no poster set) or ``source`` itself (ranking by poster). Every source's
    candidates are fetched in batches of ``batch_size`` and re-scored exactly as :func:`rank`
    does; the walk is then short: an item whose poster has no other poster within reach of
    ``dedup_threshold`` can neither be a copy of the query nor fold into another hit, so a query
    whose first ``k`` candidates (and itself) have none is answered by them in score order. Any
    other query, and any whose answer the fetched candidates do not settle, goes through
    :func:`rank`. Returns the hits per query and how many queries went through :func:`rank`.
    """
    if k < 1:
        raise RetrievalError(f"k must be at least 1, got {k}.", param="k")
    if dedup is not None and (dedup.name != source.name or len(queries) != len(source.rows)):
        raise RetrievalError(
            "rank_all_exact folds duplicates only by the set it ranks, every item a query.",
            "Use rank() for other queries.",
            param="dedup",
        )
    if not len(queries):
        return [], 0
    pos = source.position_of(n_items)
    at = pos[queries]
    fetch = min(len(source.rows), max(2 * k + 1 + 8, 32))  # what rank() fetches first
    scores = np.empty((len(queries), fetch), np.float32)
    rows = np.empty((len(queries), fetch), np.int64)
    for start in range(0, len(queries), batch_size):
        part = slice(start, start + batch_size)
        batch = np.asarray(source.vectors[at[part]], dtype=np.float32)
        scores[part], rows[part] = source.search(batch, fetch)
    # exact cosines of each query's candidates, computed as rank() computes them (its rows
    # sorted, in float64, one matrix-vector product per query: numpy's stacked product is
    # many times slower), and which items have a poster close enough to another to be folded
    margin = 1e-4  # room for FAISS's float32 scores next to the float64 cosines
    complete = (rows >= 0).all(axis=1)
    cand = np.sort(np.where(complete[:, None], rows, -1), axis=1)
    cos = np.full(cand.shape, -np.inf)
    vectors = source.vectors
    for i in np.flatnonzero(complete).tolist():
        query = np.asarray(vectors[at[i]], dtype=np.float32).astype(np.float64)
        cos[i] = np.asarray(vectors[pos[cand[i]]], dtype=np.float64) @ query
    bound = np.full(len(queries), -np.inf)
    if fetch < len(source.rows):
        bound[complete] = scores[complete, -1]
    near = np.zeros(n_items, dtype=bool)
    if dedup is not None:
        close = (cos >= dedup_threshold - margin) & (cand != queries[:, None])
        near[queries] = close.any(axis=1) | (bound >= dedup_threshold - margin)
    # the walk: the first k candidates in score order (ties by row) other than the query
    order = np.lexsort((cand, -cos), axis=1)[:, : k + 1]
    first = np.take_along_axis(cand, order, axis=1)
    first_cos = np.take_along_axis(cos, order, axis=1)
    is_query = first == queries[:, None]
    drop = np.where(is_query.any(axis=1), is_query.argmax(axis=1), min(k, first.shape[1] - 1))
    keep = np.ones(first.shape, dtype=bool)
    keep[np.arange(len(queries)), drop] = False
    picked = first[keep].reshape(len(queries), -1)[:, :k]
    picked_cos = first_cos[keep].reshape(len(queries), -1)[:, :k]
    fast = np.zeros(len(queries), dtype=bool)
    if first.shape[1] > k:  # else fewer candidates than k + 1 in all: rank() answers
        fast = complete & ~near[queries] & (picked_cos[:, -1] >= bound)
        fast &= ~near[np.clip(picked, 0, None)].any(axis=1)
    out: list[list[Hit]] = []
    slow = 0
    name = source.name
    for i, row in enumerate(queries.tolist()):
        if fast[i]:
            out.append(
                [
                    Hit(r, c, {name: c})
                    for r, c in zip(picked[i].tolist(), picked_cos[i].tolist(), strict=True)
                ]
            )
            continue
        slow += 1
        one = Source(
            name=source.name,
            rows=source.rows,
            vectors=source.vectors,
            search=_first_answer(source.search, scores[i : i + 1], rows[i : i + 1]),
            query=np.asarray(source.vectors[at[i]], dtype=np.float32),
            positions=pos,
        )
        out.append(
            rank(
                [one],
                n_items,
                k,
                exclude=[row],
                dedup=one if dedup is not None else None,
                dedup_threshold=dedup_threshold,
            )
        )
    return out, slow


def _first_answer(search, scores: np.ndarray, rows: np.ndarray):
    """``search`` that answers from ``scores``/``rows`` (one query's, already fetched) while they
    hold as many candidates as asked, and searches again for more."""

    def answer(queries: np.ndarray, want: int):
        if want <= scores.shape[1]:
            return scores[:, :want], rows[:, :want]
        return search(queries, want)

    return answer


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


# ------------------------------------------------------------------------------ results


@dataclass
class Neighbour:
    rank: int
    id: str
    title: str | None
    year: int | None
    genres: list[str]
    score: float
    cosines: dict[str, float | None]
    poster: str | None
    duplicates: list[str] = field(default_factory=list)


@dataclass
class RetrievalResult:
    """What a query found. ``query`` describes the query (kind: item, poster or text)."""

    query: dict[str, Any]
    by: str
    encoders: dict[str, str]
    scoring: str
    k: int
    neighbours: list[Neighbour]
    notes: list[str] = field(default_factory=list)
    # JPEG thumbnails stored in the index, by item id (the query item's and each neighbour's):
    # pages show these, never files the item table names.
    thumbnails: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), without the thumbnails; a service answers with this for
        every request, so it copies by hand instead of through ``dataclasses.asdict``."""
        query = dict(self.query)
        if isinstance(query.get("matched"), dict):
            query["matched"] = dict(query["matched"])
        return {
            "query": query,
            "by": self.by,
            "encoders": dict(self.encoders),
            "scoring": self.scoring,
            "k": self.k,
            "neighbours": [
                {
                    "rank": n.rank,
                    "id": n.id,
                    "title": n.title,
                    "year": n.year,
                    "genres": list(n.genres),
                    "score": n.score,
                    "cosines": dict(n.cosines),
                    "poster": n.poster,
                    "duplicates": list(n.duplicates),
                }
                for n in self.neighbours
            ],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------ the retriever


class Retriever:
    """Answers similarity and text queries over one index.

    ``image_encoder`` picks the poster embedding set (None: the index default); ``device`` is used
    for query encoders and, when "cuda", for search (:func:`ann.device_index`: faiss-gpu, else an
    exact torch search on the GPU for flat indexes); ``nprobe`` / ``ef_search`` tune
    approximate indexes (ignored for flat ones). ``encoder_loader``: (embedding set, device) ->
    its query encoder (default ``load_set_encoder``; a service passes one that keeps them).
    ``thumbnails``: attach the stored thumbnails of the query and the neighbours to each result
    (pages and HTML reports show them; a service that links to them turns this off).
    """

    def __init__(
        self,
        index,
        *,
        image_encoder: str | None = None,
        device: str = "cpu",
        nprobe: int | None = None,
        ef_search: int | None = None,
        encoder_loader: Callable | None = None,
        thumbnails: bool = True,
    ):
        self.index = index
        self.thumbnails = thumbnails
        self.image_encoder = image_encoder
        self.encoder_loader = encoder_loader or load_set_encoder
        self.device = device
        self.nprobe = nprobe
        self.ef_search = ef_search
        self._stats: dict[str, tuple[float, float]] = {}
        self._positions: dict[str, np.ndarray] = {}
        self._gpu: dict[str, Any] = {}

    def warm(self) -> None:
        """Compute what the first query of each embedding set would (cosine statistics, the
        FAISS index), so a long-running service answers its first request as fast as the rest."""
        for emb in self.index.sets:
            if emb.key not in self._stats:
                self._stats[emb.key] = pair_statistics(emb.vectors)
            _ = emb.faiss_index

    # -- pieces ------------------------------------------------------------------------

    def _set(self, modality: str, required: bool = True):
        encoder = self.image_encoder if modality == "poster" else None
        if not required and not any(s.modality == modality for s in self.index.sets):
            return None
        return self.index.get_set(modality, encoder)

    def _search_fn(self, emb):

        if self.device.startswith("cuda"):
            if emb.key not in self._gpu:  # faiss-gpu, else exact torch search on the GPU
                self._gpu[emb.key] = ann.device_index(emb.faiss_index, self.device)
            index = self._gpu[emb.key]
        else:
            index = emb.faiss_index
        ann.set_search_params(index, nprobe=self.nprobe, ef_search=self.ef_search)

        def search(queries: np.ndarray, k: int):
            if len(emb.rows) == 0:  # nothing to find: every neighbour is missing
                n = len(np.atleast_2d(queries))
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            scores, pos = ann.search(index, queries, k)
            rows = np.where(pos >= 0, emb.rows[np.clip(pos, 0, None)], -1)
            return scores, rows

        return search

    def _source(self, emb, query: np.ndarray, weight: float = 1.0) -> Source:
        if emb.key not in self._stats:
            self._stats[emb.key] = pair_statistics(emb.vectors)
        mean, std = self._stats[emb.key]
        return Source(
            name=emb.modality,
            rows=emb.rows,
            # a plain view of the memory map: rows are read without np.memmap's per-access cost
            vectors=np.asarray(emb.vectors),
            search=self._search_fn(emb),
            query=None if query is None else np.asarray(query, dtype=np.float32),
            weight=weight,
            mean=mean,
            std=std,
            positions=self._positions_of(emb),
        )

    def _positions_of(self, emb) -> np.ndarray:
        if emb.key not in self._positions:
            self._positions[emb.key] = positions_of(emb.rows, len(self.index.ids))
        return self._positions[emb.key]

    def _stored_vector(self, emb, row: int) -> np.ndarray | None:
        at = int(self._positions_of(emb)[row])
        return np.asarray(emb.vectors[at], dtype=np.float32) if at >= 0 else None

    def genre_mask(self, genres: Sequence[str] = (), exclude_genres: Sequence[str] = ()):
        """bool (n_items,): items with at least one of ``genres`` and none of ``exclude_genres``."""
        if not genres and not exclude_genres:
            return None
        vocab = {g.lower(): j for j, g in enumerate(self.index.genres)}

        def cols(names, param):
            out = []
            for g in names:
                if g.lower() not in vocab:
                    raise RetrievalError(
                        f"unknown genre {g!r};",
                        f"this index knows: {', '.join(self.index.genres)}.",
                        param=param,
                    )
                out.append(vocab[g.lower()])
            return out

        labels = self.index.labels
        keep = np.ones(len(labels), dtype=bool)
        if genres:
            keep &= labels[:, cols(genres, "genres")].any(axis=1)
        if exclude_genres:
            keep &= ~labels[:, cols(exclude_genres, "exclude_genres")].any(axis=1)
        return keep

    def _row_of_poster(self, path: Path) -> int | None:
        target = path.resolve()
        for row, item in enumerate(self.index.items):
            if item.get("poster") and Path(item["poster"]).resolve() == target:
                return row
        return None

    # -- queries -----------------------------------------------------------------------

    def similar(
        self,
        *,
        item_id: str | None = None,
        poster: str | Path | Image.Image | None = None,
        plot: str | None = None,
        title: str | None = None,
        k: int = 10,
        by: str = "poster",
        genres: Sequence[str] = (),
        exclude_genres: Sequence[str] = (),
        dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD,
        plot_weight: float = DEFAULT_PLOT_WEIGHT,
    ) -> RetrievalResult:
        """Items most like an indexed item (``item_id``), or a poster (a file, or an image
        received in memory) and/or a ``plot`` text (with its ``title``) that are not indexed."""
        _check_by(by, plot_weight)
        if title is not None and plot is None:
            raise RetrievalError(
                "A title goes with a plot (the index embeds a title with its synopsis);",
                "add the plot, or leave the title out.",
                param="title",
            )
        if item_id is not None and plot is not None:
            raise RetrievalError(
                "an indexed item is compared by its stored plot;",
                "leave the plot out.",
                param="plot",
            )
        if (item_id is None) == (poster is None and plot is None):
            raise RetrievalError(
                "Give exactly one query:", "an indexed movie's id, or a poster and/or a plot."
            )
        notes: list[str] = []
        poster_set = self._set("poster", required=by != "plot")
        plot_set = self._set("plot", required=by != "poster")
        row: int | None = None
        query: dict[str, Any]
        if item_id is not None:
            row = self.index.row_of.get(item_id)
            if row is None:
                raise UnknownItemError(
                    f"no item with id {item_id!r} in {self.index.path};",
                    self._id_hint(item_id),
                    param="item_id",
                )
            query = {"kind": "item", **self._describe_row(row)}
        elif isinstance(poster, Image.Image) or poster is None:
            query = {"kind": "upload", "poster": poster is not None, "plot": plot}
        else:
            path = Path(poster)
            if not path.is_file():
                raise NoSuchPosterError(
                    f"poster {path}: no such file;", "check the path.", param="poster"
                )
            row = self._row_of_poster(path)
            query = {"kind": "poster", "path": str(path.resolve())}
            if row is not None:
                query["matched"] = self._describe_row(row)
                notes.append(f"the poster file is item {self.index.ids[row]}'s own poster")

        qpost = qplot = None
        if poster_set is not None:
            if row is not None:
                qpost = self._stored_vector(poster_set, row)
            if qpost is None and poster is not None:
                enc = self.encoder_loader(poster_set, device=self.device)
                image = poster if isinstance(poster, Image.Image) else Path(poster)
                qpost = enc.encode_images([image])[0]
        if plot_set is not None and row is not None:
            qplot = self._stored_vector(plot_set, row)
        elif plot_set is not None and plot is not None:
            if not plot.strip():
                raise RetrievalError(
                    "the plot text is empty;", "give a synopsis or leave it out.", param="plot"
                )
            enc = self.encoder_loader(plot_set, device=self.device)
            qplot = enc.encode_texts([plot_text(plot.strip(), title)])[0]

        if poster is not None and row is None and poster_set is not None:
            pos_scores, pos_rows = self._search_fn(poster_set)(qpost[None, :], 1)
            if pos_rows[0, 0] >= 0 and pos_scores[0, 0] >= dedup_threshold:
                row = int(pos_rows[0, 0])
                query["matched"] = self._describe_row(row)
                notes.append(
                    f"the poster matches item {self.index.ids[row]} (cosine "
                    f"{pos_scores[0, 0]:.4f}); it and its copies are left out"
                )

        sources = []
        if by in ("poster", "both"):
            if qpost is None:
                if by == "poster" and item_id is None:
                    raise RetrievalError(
                        "the query has no poster, so it cannot be ranked by poster;",
                        "rank by plot instead.",
                        param="by",
                    )
                if by == "poster":
                    raise RetrievalError(
                        f"item {item_id} has no poster embedding by {poster_set.encoder} (its "
                        "poster was missing or unreadable);",
                        "rank by plot instead.",
                        param="by",
                    )
                notes.append("the query has no poster embedding: ranked by plot alone")
            else:
                sources.append(self._source(poster_set, qpost, 1.0 - plot_weight))
        if by in ("plot", "both"):
            if qplot is None:
                if by == "plot":
                    what = f"item {item_id} has no plot" if item_id else "the query has no plot"
                    raise RetrievalError(
                        f"{what}, so it cannot be ranked by plot;",
                        "rank by poster instead.",
                        param="by",
                    )
                notes.append("the query has no plot: ranked by poster alone")
            else:
                sources.append(self._source(plot_set, qplot, plot_weight))
        if not sources:
            raise RetrievalError("the query has neither a poster nor a plot embedding to compare.")
        if len(sources) == 1:  # --by both falling back to the one modality the query has
            sources[0].weight = 1.0

        dedup = None
        if poster_set is not None:
            dedup = self._source(poster_set, qpost if qpost is not None else None)
        hits = rank(
            sources,
            len(self.index.ids),
            k,
            keep=self.genre_mask(genres, exclude_genres),
            exclude=[row] if row is not None else [],
            dedup=dedup,
            dedup_threshold=dedup_threshold,
        )
        sources = [s for s in sources if s.weight > 0]
        fused = len(sources) > 1
        scoring = (
            f"standardised cosines combined as ({1 - plot_weight:g} x z_poster + "
            f"{plot_weight:g} x z_plot) / sqrt({1 - plot_weight:g}^2 + {plot_weight:g}^2); "
            "an item lacking one modality is scored by the other's z"
            if fused
            else f"cosine of {sources[0].name} embeddings"
        )
        encoders = {s.name: self._set(s.name).encoder for s in sources}
        return self._result(query, by, encoders, scoring, k, hits, notes, genres, exclude_genres)

    def search_text(
        self,
        text: str,
        *,
        k: int = 10,
        genres: Sequence[str] = (),
        exclude_genres: Sequence[str] = (),
        dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD,
    ) -> RetrievalResult:
        """Items whose poster (CLIP text tower) or else plot (sentence encoder) matches ``text``."""
        if not text or not text.strip():
            raise RetrievalError(
                "the search text is empty;", "give a few words to search for.", param="text"
            )
        poster_set = self._set("poster", required=False)
        notes = []
        if poster_set is not None and "text" in poster_set.describe.get("modalities", []):
            enc = self.encoder_loader(poster_set, device=self.device)
            target, by = poster_set, "poster"
            notes.append(
                f"text -> posters through the text tower of {enc.name} ({poster_set.space})"
            )
        else:
            plot_set = self._set("plot", required=False)
            if plot_set is None:
                raise RetrievalError(
                    f"cannot search text in {self.index.path}: its poster encoder "
                    f"({poster_set.encoder if poster_set else 'none'}) has no text tower and it "
                    "holds no plot embeddings. Index posters with a CLIP encoder or add plots."
                )
            enc = self.encoder_loader(plot_set, device=self.device)
            target, by = plot_set, "plot"
            why = (
                f"the poster encoder {poster_set.encoder} has no text tower"
                if poster_set is not None
                else "the index has no poster embeddings"
            )
            notes.append(f"text -> plots through {enc.name} ({why})")
        qvec = enc.encode_texts([text])[0]
        dedup = self._source(poster_set, None) if poster_set is not None else None
        hits = rank(
            [self._source(target, qvec)],
            len(self.index.ids),
            k,
            keep=self.genre_mask(genres, exclude_genres),
            dedup=dedup,
            dedup_threshold=dedup_threshold,
        )
        query = {"kind": "text", "text": text}
        scoring = f"cosine of the text embedding with {by} embeddings"
        return self._result(
            query, by, {by: target.encoder}, scoring, k, hits, notes, genres, exclude_genres
        )

    def similar_all(
        self,
        *,
        k: int = 10,
        by: str = "poster",
        genres: Sequence[str] = (),
        exclude_genres: Sequence[str] = (),
        dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD,
        plot_weight: float = DEFAULT_PLOT_WEIGHT,
        batch_size: int = 2048,
    ) -> AllNeighbours:
        """Every indexed item's ``k`` neighbours, as :meth:`similar` with ``item_id`` gives them
        (same sources, weights, filters, duplicate folding and :func:`rank`), with each
        modality's FAISS index asked for the first candidates of ``batch_size`` items at once.
        Items that cannot be asked ``by`` this way (no poster for ``by="poster"``, no plot for
        ``by="plot"``) are left out and counted in the notes. One flat set and no filters (the
        common case) is ranked for a whole batch at once by :func:`rank_all_exact`."""
        _check_by(by, plot_weight)
        if k < 1:
            raise RetrievalError(f"k must be at least 1, got {k}.")
        n = len(self.index.ids)
        poster_set = self._set("poster", required=by != "plot")
        plot_set = self._set("plot", required=by != "poster")
        base = {}
        if poster_set is not None:
            base["poster"] = self._source(poster_set, None, 1.0 - plot_weight)
        if plot_set is not None and by != "poster":
            base["plot"] = self._source(plot_set, None, plot_weight)
        wanted = ["poster"] if by == "poster" else ["plot"] if by == "plot" else ["poster", "plot"]
        has = {m: (base[m].position_of(n) >= 0) if m in base else np.zeros(n, bool) for m in base}
        ask = np.zeros(n, dtype=bool)
        for m in wanted:
            ask |= has.get(m, np.zeros(n, bool))
        keep = self.genre_mask(genres, exclude_genres)
        # the candidates rank() asks for first, fetched for a batch of queries at once
        fetch = max(2 * k + 1 + 8, 32)
        queries = np.flatnonzero(ask)
        out_rows: list[list[Hit]] = []
        one = wanted[0] if len(wanted) == 1 and wanted[0] in base else None
        batched = (
            keep is None
            and one is not None
            and (one == "poster" or "poster" not in base)
            and ann.is_exact(self._set(one).faiss_index)
        )
        if batched:
            # the common case, one flat set and no filters: rank() batched
            src = replace(base[one], weight=1.0)
            out_rows, slow = rank_all_exact(
                src,
                queries,
                n,
                k,
                dedup=src if one == "poster" else None,
                dedup_threshold=dedup_threshold,
                batch_size=batch_size,
            )
            logger.debug("similar --all: %d of %d items ranked one by one", slow, len(queries))
        for start in range(0, 0 if batched else len(queries), batch_size):
            part = queries[start : start + batch_size]
            found = {}
            for m in wanted:
                if m not in base:
                    continue
                src = base[m]
                at = src.position_of(n)[part]
                ok = at >= 0
                want = min(fetch, len(src.rows))
                sc = np.full((len(part), want), -np.inf, np.float32)
                ro = np.full((len(part), want), -1, np.int64)
                if ok.any():
                    sc[ok], ro[ok] = src.search(np.asarray(src.vectors[at[ok]], np.float32), want)
                found[m] = (at, sc, ro)
            for i, row in enumerate(part):
                sources = []
                for m in wanted:
                    if m in found and found[m][0][i] >= 0:
                        sources.append(self._cached_source(base[m], found[m], i))
                if len(sources) == 1:  # --by both falling back to the one modality it has
                    sources[0].weight = 1.0
                dedup = None
                if "poster" in base:
                    at = base["poster"].position_of(n)[row]
                    qpost = base["poster"].vectors[at] if at >= 0 else None
                    dedup = replace(
                        base["poster"],
                        weight=1.0,
                        query=None if qpost is None else np.asarray(qpost, np.float32),
                    )
                hits = rank(
                    sources,
                    n,
                    k,
                    keep=keep,
                    exclude=[int(row)],
                    dedup=dedup,
                    dedup_threshold=dedup_threshold,
                )
                out_rows.append(hits)
        skipped = int(n - len(queries))
        notes = []
        if skipped:
            notes.append(f"{skipped} items have no {' or '.join(wanted)} embedding: left out")
        if genres:
            notes.append("kept items with at least one of: " + ", ".join(genres))
        if exclude_genres:
            notes.append("left out items with any of: " + ", ".join(exclude_genres))
        encoders = {m: self._set(m).encoder for m in wanted if m in base}
        return AllNeighbours(self.index, by, k, encoders, queries, out_rows, notes)

    @staticmethod
    def _cached_source(src: Source, found, i: int) -> Source:
        """``src`` asked for query ``i`` of a batch: the batch's candidates answer the first
        search; a larger one (filters left too few results) searches again."""
        at, scores, rows = found
        query = np.asarray(src.vectors[at[i]], dtype=np.float32)
        search = src.search

        def cached(q: np.ndarray, want: int):
            if want <= scores.shape[1]:
                return scores[i : i + 1, :want], rows[i : i + 1, :want]
            return search(q, want)

        return replace(src, query=query, search=cached)

    # -- formatting --------------------------------------------------------------------

    def _id_hint(self, given: str) -> str:
        """What to ask for instead of an unknown id: the ids of movies titled ``given``, else
        ids spelled like it, else what ids look like."""
        ids = self.index.ids
        if not len(ids):
            return "the index holds no items."
        wanted = given.strip().casefold()
        items = self.index.items if len(ids) <= 200_000 else []  # a hint is not worth a scan
        titled = [it["id"] for it in items if (it.get("title") or "").casefold() == wanted]
        if titled:
            return f"a movie titled {given!r} has id {', '.join(map(repr, titled[:3]))}."
        near = difflib.get_close_matches(given, ids[:100_000], n=3, cutoff=0.75)
        if near:
            return f"did you mean {', '.join(map(repr, near))}?"
        return f"ids look like {ids[0]!r}."

    def _describe_row(self, row: int) -> dict[str, Any]:
        item = self.index.items[row]
        return {
            "id": item["id"],
            "title": item.get("title"),
            "year": item.get("year"),
            "genres": list(item.get("genres") or []),
            "poster": item.get("poster"),
        }

    def _result(self, query, by, encoders, scoring, k, hits, notes, genres, exclude_genres):
        neighbours = []
        for i, h in enumerate(hits, start=1):
            d = self._describe_row(h.row)
            neighbours.append(
                Neighbour(
                    rank=i,
                    id=d["id"],
                    title=d["title"],
                    year=d["year"],
                    genres=d["genres"],
                    score=h.score,
                    cosines=h.cosines,
                    poster=d["poster"],
                    duplicates=[self.index.ids[r] for r in h.duplicates],
                )
            )
        if genres:
            notes.append("kept items with at least one of: " + ", ".join(genres))
        if exclude_genres:
            notes.append("left out items with any of: " + ", ".join(exclude_genres))
        if len(neighbours) < k:
            notes.append(f"only {len(neighbours)} items match (asked for {k})")
        shown = [n.id for n in neighbours] + [
            q["id"] for q in (query, query.get("matched") or {}) if q.get("id")
        ]
        thumbs = {}
        if self.thumbnails:
            thumbs = {i: t for i in shown if (t := self.index.thumbnail(i)) is not None}
        return RetrievalResult(query, by, encoders, scoring, k, neighbours, notes, thumbs)


def _check_by(by: str, plot_weight: float) -> None:
    if by not in BY_CHOICES:
        raise RetrievalError(
            f"unknown ranking {by!r};", f"expected one of {', '.join(BY_CHOICES)}.", param="by"
        )
    if not 0.0 <= plot_weight <= 1.0:
        raise RetrievalError(
            f"plot weight must be within [0, 1], got {plot_weight}.", param="plot_weight"
        )


@dataclass
class AllNeighbours:
    """Every item's neighbours (:meth:`Retriever.similar_all`): ``queries`` item rows, and for
    each its hits in rank order."""

    index: Any
    by: str
    k: int
    encoders: dict[str, str]
    queries: np.ndarray
    hits: list[list[Hit]]
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """One flat record per (item, neighbour): id, neighbour_id, rank (1-based), score."""
        ids = self.index.ids
        return [
            {"id": ids[q], "neighbour_id": ids[h.row], "rank": r, "score": round(h.score, 6)}
            for q, hits in zip(self.queries.tolist(), self.hits, strict=True)
            for r, h in enumerate(hits, start=1)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "k": self.k,
            "encoders": dict(self.encoders),
            "n_items": len(self.queries),
            "notes": list(self.notes),
            "neighbours": self.records(),
        }


def write_neighbours(result: AllNeighbours, path: str | Path) -> Path:
    """Write ``result`` to ``path``: ``.csv`` as the flat records (id, neighbour_id, rank,
    score), anything else as the JSON of :meth:`AllNeighbours.to_dict`."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=["id", "neighbour_id", "rank", "score"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(result.records())
        atomic.write_text(path, buf.getvalue())
    else:
        atomic.write_text(path, json.dumps(result.to_dict(), indent=1) + "\n")
    return path


def open_retriever(index_dir: str | Path, **kwargs) -> Retriever:
    """``Retriever(GenreIndex.open(index_dir), **kwargs)``."""

    return Retriever(GenreIndex.open(index_dir), **kwargs)


__all__ = [
    "AllNeighbours",
    "BY_CHOICES",
    "Hit",
    "Neighbour",
    "RetrievalError",
    "RetrievalResult",
    "Retriever",
    "Source",
    "open_retriever",
    "pair_statistics",
    "rank",
    "write_neighbours",
]
