"""Every indexed item's neighbours at once (``similar --all``): the candidates of many queries
fetched in batches, a flat set without filters ranked for a whole batch by
:func:`rank_all_exact`, and the result written as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre import ann
from embedgenre.errors import RetrievalError
from embedgenre.retrieval.query import Plan
from embedgenre.retrieval.rank import (
    DEFAULT_DEDUP_THRESHOLD,
    Hit,
    Source,
    check_k,
    rank,
)
from embedgenre.retrieval.sets import IndexSets
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

# room for FAISS's float32 scores next to the float64 cosines
_MARGIN = 1e-4


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


# ------------------------------------------------------------------------------ every item


def neighbours_of_all(sets: IndexSets, plan: Plan, batch_size: int = 2048) -> AllNeighbours:
    """Every item's neighbours as :meth:`Retriever.similar` gives them for its id (see
    :meth:`Retriever.similar_all`)."""
    n = sets.n_items
    base = {}
    if plan.poster_set is not None:
        base["poster"] = sets.source(plan.poster_set, None, 1.0 - plan.plot_weight)
    if plan.plot_set is not None and plan.by != "poster":
        base["plot"] = sets.source(plan.plot_set, None, plan.plot_weight)
    by = plan.by
    wanted = ["poster"] if by == "poster" else ["plot"] if by == "plot" else ["poster", "plot"]
    ask = np.zeros(n, dtype=bool)
    for m in wanted:
        if m in base:
            ask |= base[m].position_of(n) >= 0
    queries = np.flatnonzero(ask)
    one = wanted[0] if len(wanted) == 1 and wanted[0] in base else None
    one_set = plan.poster_set if one == "poster" else plan.plot_set
    if (
        plan.keep is None
        and one is not None
        and (one == "poster" or "poster" not in base)
        and ann.is_exact(one_set.faiss_index)
    ):
        # the common case, one flat set and no filters: rank() batched
        src = replace(base[one], weight=1.0)
        dedup = src if one == "poster" else None
        out_rows, slow = rank_all_exact(
            src, queries, n, plan.k, dedup=dedup, dedup_threshold=plan.dedup_threshold,
            batch_size=batch_size,
        )  # fmt: skip
        logger.debug("similar --all: %d of %d items ranked one by one", slow, len(queries))
    else:
        out_rows = []
        for start in range(0, len(queries), batch_size):
            part = queries[start : start + batch_size]
            out_rows.extend(_rank_batch(base, wanted, part, plan, n))
    skipped = int(n - len(queries))
    notes = (
        [f"{skipped} items have no {' or '.join(wanted)} embedding: left out"] if skipped else []
    )
    encoders = {m: sets.get(m).encoder for m in wanted if m in base}
    return AllNeighbours(
        sets.index, by, plan.k, encoders, queries, out_rows, notes + plan.filter_notes()
    )


def _rank_batch(
    base: dict[str, Source], wanted: list[str], part: np.ndarray, plan: Plan, n: int
) -> list[list[Hit]]:
    """:func:`rank` for each item row of ``part``, its first candidates fetched for all at once."""
    fetch = max(2 * plan.k + 1 + 8, 32)  # the candidates rank() asks for first
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
    out = []
    for i, row in enumerate(part):
        sources = [
            _cached_source(base[m], found[m], i)
            for m in wanted
            if m in found and found[m][0][i] >= 0
        ]
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
        out.append(
            rank(sources, n, plan.k, keep=plan.keep, exclude=[int(row)], dedup=dedup,
                 dedup_threshold=plan.dedup_threshold)
        )  # fmt: skip
    return out


def _cached_source(src: Source, found, i: int) -> Source:
    """``src`` asked for query ``i`` of a batch: the batch's candidates answer the first
    search; a larger one (filters left too few results) searches again."""
    at, scores, rows = found
    query = np.asarray(src.vectors[at[i]], dtype=np.float32)
    return replace(
        src, query=query, search=_first_answer(src.search, scores[i : i + 1], rows[i : i + 1])
    )


def _first_answer(search, scores: np.ndarray, rows: np.ndarray):
    """``search`` that answers from ``scores``/``rows`` (one query's, already fetched) while they
    hold as many candidates as asked, and searches again for more."""

    def answer(queries: np.ndarray, want: int):
        if want <= scores.shape[1]:
            return scores[:, :want], rows[:, :want]
        return search(queries, want)

    return answer


# ------------------------------------------------------------------------------ one flat set


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
    check_k(k)
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
    first = _first_k(source, queries, pos, scores, rows, k)
    fast = first.settled(n_items, dedup is not None, dedup_threshold)
    out: list[list[Hit]] = []
    slow = 0
    name = source.name
    for i, row in enumerate(queries.tolist()):
        if fast[i]:
            picked = zip(first.rows[i].tolist(), first.cosines[i].tolist(), strict=True)
            out.append([Hit(r, c, {name: c}) for r, c in picked])
            continue
        slow += 1
        one = replace(
            source,
            search=_first_answer(source.search, scores[i : i + 1], rows[i : i + 1]),
            query=np.asarray(source.vectors[at[i]], dtype=np.float32),
            weight=1.0,
            mean=0.0,
            std=1.0,
            positions=pos,
        )
        dedup_one = one if dedup is not None else None
        out.append(
            rank([one], n_items, k, exclude=[row], dedup=dedup_one, dedup_threshold=dedup_threshold)
        )
    return out, slow


@dataclass
class _FirstK:
    """Each query's fetched candidates re-scored exactly, and its first ``k`` other than itself.

    ``queries`` (q,) item rows; ``cand`` / ``cos`` (q, fetch) candidates sorted by row and their
    cosines (-1 / -inf for a query whose search came back short); ``bound`` (q,) the best cosine an
    unfetched item could have; ``rows`` / ``cosines`` (q, k) the first ``k`` candidates in score
    order, ties by row, without the query (None when fewer than ``k + 1`` were fetched).
    """

    queries: np.ndarray
    cand: np.ndarray
    cos: np.ndarray
    complete: np.ndarray
    bound: np.ndarray
    rows: np.ndarray | None
    cosines: np.ndarray | None

    def settled(self, n_items: int, folds: bool, threshold: float) -> np.ndarray:
        """bool (q,): queries that their first ``k`` answer as :func:`rank` would: a complete
        fetch, the last of the ``k`` at or above the bound, and (``folds``: duplicates are folded)
        no poster of the query or of the ``k`` within reach of ``threshold`` of another."""
        if self.rows is None:  # fewer candidates than k + 1 in all: rank() answers
            return np.zeros(len(self.queries), dtype=bool)
        near = np.zeros(n_items, dtype=bool)
        if folds:
            close = (self.cos >= threshold - _MARGIN) & (self.cand != self.queries[:, None])
            near[self.queries] = close.any(axis=1) | (self.bound >= threshold - _MARGIN)
        fast = self.complete & ~near[self.queries] & (self.cosines[:, -1] >= self.bound)
        return fast & ~near[np.clip(self.rows, 0, None)].any(axis=1)


def _first_k(source, queries, pos, scores, rows, k) -> _FirstK:
    """Exact cosines of each query's candidates, computed as rank() computes them (its rows
    sorted, in float64, one matrix-vector product per query: numpy's stacked product is many
    times slower), and the first ``k`` of them in score order other than the query."""
    at = pos[queries]
    complete = (rows >= 0).all(axis=1)
    cand = np.sort(np.where(complete[:, None], rows, -1), axis=1)
    cos = np.full(cand.shape, -np.inf)
    vectors = source.vectors
    for i in np.flatnonzero(complete).tolist():
        query = np.asarray(vectors[at[i]], dtype=np.float32).astype(np.float64)
        cos[i] = np.asarray(vectors[pos[cand[i]]], dtype=np.float64) @ query
    bound = np.full(len(queries), -np.inf)
    if rows.shape[1] < len(source.rows):
        bound[complete] = scores[complete, -1]
    first_k = _FirstK(queries, cand, cos, complete, bound, None, None)
    order = np.lexsort((cand, -cos), axis=1)[:, : k + 1]
    first = np.take_along_axis(cand, order, axis=1)
    if first.shape[1] <= k:
        return first_k
    first_cos = np.take_along_axis(cos, order, axis=1)
    is_query = first == queries[:, None]
    drop = np.where(is_query.any(axis=1), is_query.argmax(axis=1), k)
    keep = np.ones(first.shape, dtype=bool)
    keep[np.arange(len(queries)), drop] = False
    first_k.rows = first[keep].reshape(len(queries), -1)[:, :k]
    first_k.cosines = first_cos[keep].reshape(len(queries), -1)[:, :k]
    return first_k
