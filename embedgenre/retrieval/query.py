"""From what a caller asks to vectors: the checked options every similar-movie query shares, and a
query (an indexed item's id, a poster file or image, a plot, a text) turned into one vector per
modality and those into the :class:`~embedgenre.retrieval.rank.Source` objects ranked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedgenre.catalog import plot_text
from embedgenre.errors import NoSuchPosterError, RetrievalError, UnknownItemError
from embedgenre.names import BY_CHOICES
from embedgenre.retrieval.rank import Source, check_k
from embedgenre.retrieval.sets import IndexSets


def check_by(by: str, plot_weight: float) -> None:
    """Refuse an unknown ``by`` or a ``plot_weight`` outside [0, 1]."""
    if by not in BY_CHOICES:
        raise RetrievalError(
            f"unknown ranking {by!r};", f"expected one of {', '.join(BY_CHOICES)}.", param="by"
        )
    if not 0.0 <= plot_weight <= 1.0:
        raise RetrievalError(
            f"plot weight must be within [0, 1], got {plot_weight}.", param="plot_weight"
        )


@dataclass(frozen=True)
class Plan:
    """The options of a similar-movie query, checked, with what they select: ``keep`` bool
    (n_items,) the items the genre filters allow (None: all), and the poster and plot embedding
    sets ``by`` needs (None where the index has none and ``by`` can do without)."""

    k: int
    by: str
    genres: Sequence[str]
    exclude_genres: Sequence[str]
    dedup_threshold: float
    plot_weight: float
    keep: np.ndarray | None
    poster_set: Any
    plot_set: Any

    @classmethod
    def make(
        cls,
        sets: IndexSets,
        k: int,
        by: str,
        genres: Sequence[str],
        exclude_genres: Sequence[str],
        dedup_threshold: float,
        plot_weight: float,
    ) -> Plan:
        """Check the options and look up the embedding sets and the genre filter they name."""
        check_by(by, plot_weight)
        check_k(k)
        return cls(
            k,
            by,
            genres,
            exclude_genres,
            dedup_threshold,
            plot_weight,
            keep=sets.genre_mask(genres, exclude_genres),
            poster_set=sets.get("poster", required=by != "plot"),
            plot_set=sets.get("plot", required=by != "poster"),
        )

    def filter_notes(self) -> list[str]:
        """What the genre filters kept and left out, in words."""
        notes = []
        if self.genres:
            notes.append("kept items with at least one of: " + ", ".join(self.genres))
        if self.exclude_genres:
            notes.append("left out items with any of: " + ", ".join(self.exclude_genres))
        return notes


@dataclass
class Query:
    """One similar-movie query: what was given, how results describe it (``description``), the
    indexed item it is or matches (``row``), and notes on how it was read."""

    item_id: str | None
    poster: str | Path | Image.Image | None
    plot: str | None
    title: str | None
    description: dict[str, Any] = field(default_factory=dict)
    row: int | None = None
    notes: list[str] = field(default_factory=list)


def check_query(item_id, poster, plot, title) -> None:
    """Refuse a query that is not exactly one of: an indexed item, a poster and/or a plot."""
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


def resolve_query(sets: IndexSets, query: Query) -> Query:
    """Find the indexed item ``query`` names (its id) or whose poster file it gives, and describe
    the query as results show it."""
    index = sets.index
    if query.item_id is not None:
        query.row = index.row_of.get(query.item_id)
        if query.row is None:
            raise UnknownItemError(
                f"no item with id {query.item_id!r} in {index.path};",
                sets.id_hint(query.item_id),
                param="item_id",
            )
        query.description = {"kind": "item", **sets.describe_row(query.row)}
    elif isinstance(query.poster, Image.Image) or query.poster is None:
        query.description = {
            "kind": "upload",
            "poster": query.poster is not None,
            "plot": query.plot,
        }
    else:
        path = Path(query.poster)
        if not path.is_file():
            raise NoSuchPosterError(
                f"poster {path}: no such file;", "check the path.", param="poster"
            )
        query.row = sets.row_of_poster(path)
        query.description = {"kind": "poster", "path": str(path.resolve())}
        if query.row is not None:
            query.description["matched"] = sets.describe_row(query.row)
            query.notes.append(f"the poster file is item {index.ids[query.row]}'s own poster")
    return query


def query_vectors(
    sets: IndexSets, plan: Plan, query: Query
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The query's poster and plot vectors (d,) (None where it has none): an indexed item's stored
    ones, else the given poster and plot encoded by the encoders of the index's sets."""
    qpost = qplot = None
    poster_set, plot_set, row = plan.poster_set, plan.plot_set, query.row
    if poster_set is not None:
        if row is not None:
            qpost = sets.stored_vector(poster_set, row)
        if qpost is None and query.poster is not None:
            poster = query.poster
            image = poster if isinstance(poster, Image.Image) else Path(poster)
            qpost = sets.encoder(poster_set).encode_images([image])[0]
    if plot_set is not None and row is not None:
        qplot = sets.stored_vector(plot_set, row)
    elif plot_set is not None and query.plot is not None:
        if not query.plot.strip():
            raise RetrievalError(
                "the plot text is empty;", "give a synopsis or leave it out.", param="plot"
            )
        text = plot_text(query.plot.strip(), query.title)
        qplot = sets.encoder(plot_set).encode_texts([text])[0]
    return qpost, qplot


def match_poster(sets: IndexSets, plan: Plan, query: Query, qpost: np.ndarray | None) -> None:
    """A poster not found by its path may still be an indexed item's poster (another copy, a
    re-encode): the closest indexed poster within ``dedup_threshold`` becomes the query's item,
    left out of the results with its copies."""
    if query.poster is None or query.row is not None or plan.poster_set is None:
        return
    scores, rows = sets.search_fn(plan.poster_set)(qpost[None, :], 1)
    if rows[0, 0] >= 0 and scores[0, 0] >= plan.dedup_threshold:
        query.row = int(rows[0, 0])
        query.description["matched"] = sets.describe_row(query.row)
        query.notes.append(
            f"the poster matches item {sets.index.ids[query.row]} (cosine "
            f"{scores[0, 0]:.4f}); it and its copies are left out"
        )


def query_sources(
    sets: IndexSets,
    plan: Plan,
    query: Query,
    qpost: np.ndarray | None,
    qplot: np.ndarray | None,
) -> list[Source]:
    """The sources ranked ``by`` posters, plots or both; ``by="both"`` with one of the two
    vectors missing falls back to the other, said in the notes."""
    sources = []
    if plan.by in ("poster", "both"):
        if qpost is None:
            _no_poster(plan, query)
        else:
            sources.append(sets.source(plan.poster_set, qpost, 1.0 - plan.plot_weight))
    if plan.by in ("plot", "both"):
        if qplot is None:
            if plan.by == "plot":
                what = (
                    f"item {query.item_id} has no plot"
                    if query.item_id
                    else "the query has no plot"
                )
                raise RetrievalError(
                    f"{what}, so it cannot be ranked by plot;",
                    "rank by poster instead.",
                    param="by",
                )
            query.notes.append("the query has no plot: ranked by poster alone")
        else:
            sources.append(sets.source(plan.plot_set, qplot, plan.plot_weight))
    if not sources:
        raise RetrievalError("the query has neither a poster nor a plot embedding to compare.")
    if len(sources) == 1:  # --by both falling back to the one modality the query has
        sources[0].weight = 1.0
    return sources


def _no_poster(plan: Plan, query: Query) -> None:
    """A query without a poster vector: refused by poster, noted with ``by="both"``."""
    if plan.by == "poster" and query.item_id is None:
        raise RetrievalError(
            "the query has no poster, so it cannot be ranked by poster;",
            "rank by plot instead.",
            param="by",
        )
    if plan.by == "poster":
        raise RetrievalError(
            f"item {query.item_id} has no poster embedding by {plan.poster_set.encoder} (its "
            "poster was missing or unreadable);",
            "rank by plot instead.",
            param="by",
        )
    query.notes.append("the query has no poster embedding: ranked by plot alone")


def text_query(sets: IndexSets, text: str) -> tuple[Any, str, np.ndarray, list[str]]:
    """A search text encoded for the set it is compared with: posters through a CLIP text tower
    when the poster set has one, else plots. Returns (that set, its modality, the vector (d,),
    notes saying which)."""
    if not text or not text.strip():
        raise RetrievalError(
            "the search text is empty;", "give a few words to search for.", param="text"
        )
    poster_set = sets.get("poster", required=False)
    if poster_set is not None and "text" in poster_set.describe.get("modalities", []):
        enc = sets.encoder(poster_set)
        target, by = poster_set, "poster"
        notes = [f"text -> posters through the text tower of {enc.name} ({poster_set.space})"]
    else:
        target = sets.get("plot", required=False)
        if target is None:
            raise RetrievalError(
                f"cannot search text in {sets.index.path}: its poster encoder "
                f"({poster_set.encoder if poster_set else 'none'}) has no text tower and it "
                "holds no plot embeddings. Index posters with a CLIP encoder or add plots."
            )
        enc = sets.encoder(target)
        by = "plot"
        why = (
            f"the poster encoder {poster_set.encoder} has no text tower"
            if poster_set is not None
            else "the index has no poster embeddings"
        )
        notes = [f"text -> plots through {enc.name} ({why})"]
    return target, by, enc.encode_texts([text])[0], notes
