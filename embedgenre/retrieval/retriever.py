"""The :class:`Retriever`: a query -> its vectors -> sources -> :func:`rank` -> a result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from embedgenre.retrieval.allpairs import AllNeighbours, neighbours_of_all
from embedgenre.retrieval.query import (
    Plan,
    Query,
    check_query,
    match_poster,
    query_sources,
    query_vectors,
    resolve_query,
    text_query,
)
from embedgenre.retrieval.rank import (
    DEFAULT_DEDUP_THRESHOLD,
    DEFAULT_PLOT_WEIGHT,
    Hit,
    Source,
    rank,
)
from embedgenre.retrieval.results import Neighbour, RetrievalResult
from embedgenre.retrieval.sets import IndexSets
from embedgenre.store import GenreIndex


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
        self.sets = IndexSets(
            index,
            image_encoder=image_encoder,
            device=device,
            nprobe=nprobe,
            ef_search=ef_search,
            encoder_loader=encoder_loader,
        )

    def warm(self) -> None:
        """Compute what the first query of each embedding set would (cosine statistics, the
        FAISS index), so a long-running service answers its first request as fast as the rest."""
        self.sets.warm()

    def genre_mask(self, genres: Sequence[str] = (), exclude_genres: Sequence[str] = ()):
        """bool (n_items,): items with at least one of ``genres`` and none of ``exclude_genres``."""
        return self.sets.genre_mask(genres, exclude_genres)

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
        check_query(item_id, poster, plot, title)
        plan = Plan.make(self.sets, k, by, genres, exclude_genres, dedup_threshold, plot_weight)
        query = resolve_query(self.sets, Query(item_id, poster, plot, title))
        qpost, qplot = query_vectors(self.sets, plan, query)
        match_poster(self.sets, plan, query, qpost)
        sources = query_sources(self.sets, plan, query, qpost, qplot)
        dedup = None
        if plan.poster_set is not None:
            dedup = self.sets.source(plan.poster_set, qpost)
        exclude = [query.row] if query.row is not None else []
        hits = self._rank(sources, plan, exclude=exclude, dedup=dedup)
        sources = [s for s in sources if s.weight > 0]
        encoders = {s.name: self.sets.get(s.name).encoder for s in sources}
        scoring = _scoring(sources, plot_weight)
        return self._result(plan, query.description, by, encoders, scoring, hits, query.notes)

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
        target, by, qvec, notes = text_query(self.sets, text)
        # one set is ranked: the plot weight plays no part
        plan = Plan.make(self.sets, k, by, genres, exclude_genres, dedup_threshold, 0.0)
        poster_set = self.sets.get("poster", required=False)
        dedup = self.sets.source(poster_set, None) if poster_set is not None else None
        hits = self._rank([self.sets.source(target, qvec)], plan, dedup=dedup)
        query = {"kind": "text", "text": text}
        scoring = f"cosine of the text embedding with {by} embeddings"
        return self._result(plan, query, by, {by: target.encoder}, scoring, hits, notes)

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
        plan = Plan.make(self.sets, k, by, genres, exclude_genres, dedup_threshold, plot_weight)
        return neighbours_of_all(self.sets, plan, batch_size)

    # -- pieces ------------------------------------------------------------------------

    def _rank(
        self, sources: list[Source], plan: Plan, *, exclude=(), dedup: Source | None
    ) -> list[Hit]:
        return rank(
            sources,
            self.sets.n_items,
            plan.k,
            keep=plan.keep,
            exclude=exclude,
            dedup=dedup,
            dedup_threshold=plan.dedup_threshold,
        )

    def _result(
        self,
        plan: Plan,
        query: dict[str, Any],
        by: str,
        encoders: dict[str, str],
        scoring: str,
        hits: list[Hit],
        notes: list[str],
    ) -> RetrievalResult:
        """The hits as a result: each described, the notes completed, thumbnails attached."""
        neighbours = []
        for i, h in enumerate(hits, start=1):
            d = self.sets.describe_row(h.row)
            duplicates = [self.index.ids[r] for r in h.duplicates]
            neighbours.append(
                Neighbour(rank=i, **d, score=h.score, cosines=h.cosines, duplicates=duplicates)
            )
        notes = notes + plan.filter_notes()
        if len(neighbours) < plan.k:
            notes.append(f"only {len(neighbours)} items match (asked for {plan.k})")
        shown = [n.id for n in neighbours] + [
            q["id"] for q in (query, query.get("matched") or {}) if q.get("id")
        ]
        thumbs = {}
        if self.thumbnails:
            thumbs = {i: t for i in shown if (t := self.index.thumbnail(i)) is not None}
        return RetrievalResult(query, by, encoders, scoring, plan.k, neighbours, notes, thumbs)


def _scoring(sources: list[Source], plot_weight: float) -> str:
    """How the results of ``sources`` were scored, in words."""
    if len(sources) > 1:
        a, b = 1 - plot_weight, plot_weight
        return (
            f"standardised cosines combined as ({a:g} x z_poster + "
            f"{b:g} x z_plot) / sqrt({a:g}^2 + {b:g}^2); "
            "an item lacking one modality is scored by the other's z"
        )
    return f"cosine of {sources[0].name} embeddings"


def open_retriever(index_dir: str | Path, **kwargs) -> Retriever:
    """``Retriever(GenreIndex.open(index_dir), **kwargs)``."""
    return Retriever(GenreIndex.open(index_dir), **kwargs)
