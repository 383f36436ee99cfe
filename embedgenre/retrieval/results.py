"""What a query found: the result objects every surface renders (CLI, Python, HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
