"""Similar posters and text search over a GenreIndex.

The modules follow a query through its steps: :mod:`~embedgenre.retrieval.query` (what was
asked, checked, turned into one vector per modality and those into sources),
:mod:`~embedgenre.retrieval.rank` (candidates, exact re-scoring, fusion, the walk that skips,
filters and folds duplicates),
:mod:`~embedgenre.retrieval.retriever` (the :class:`Retriever` running those steps for one query),
:mod:`~embedgenre.retrieval.allpairs` (every item's neighbours at once) and
:mod:`~embedgenre.retrieval.results` (what a query found); :mod:`~embedgenre.retrieval.sets` reads
the index's embedding sets and items for them.

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

from embedgenre.errors import RetrievalError
from embedgenre.names import BY_CHOICES
from embedgenre.retrieval.allpairs import AllNeighbours, rank_all_exact, write_neighbours
from embedgenre.retrieval.rank import (
    DEFAULT_DEDUP_THRESHOLD,
    DEFAULT_PLOT_WEIGHT,
    Hit,
    Source,
    pair_statistics,
    positions_of,
    rank,
)
from embedgenre.retrieval.results import Neighbour, RetrievalResult
from embedgenre.retrieval.retriever import Retriever, open_retriever

__all__ = [
    "DEFAULT_DEDUP_THRESHOLD",
    "DEFAULT_PLOT_WEIGHT",
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
    "positions_of",
    "rank",
    "rank_all_exact",
    "write_neighbours",
]
