"""What the index holds: its summary, its movies a page at a time, one movie, a thumbnail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from embedgenre.names import BY_CHOICES
from embedgenre.serve.models import ID_PATTERN, IndexSummary, Item, ItemPage, errors
from embedgenre.serve.problems import ApiError
from embedgenre.serve.routers.common import answer, generation, thumb_url
from embedgenre.serve.service import Generation

router = APIRouter(tags=["items"])

IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="An indexed movie's id.")]
Gen = Annotated[Generation, Depends(generation)]


class JpegResponse(Response):
    media_type = "image/jpeg"


def item_doc(gen: Generation, row: int, with_plot: bool = True) -> dict:
    """Movie ``row`` of the generation's index as the API shows it."""
    it = gen.index.items[row]
    doc = {
        "id": it["id"],
        "title": it.get("title"),
        "year": it.get("year"),
        "genres": list(it.get("genres") or []),
        "thumbnail": thumb_url(gen, it["id"]),
    }
    if with_plot:
        doc["plot"] = it.get("plot")
    return doc


@router.get(
    "/v1/index",
    summary="What the index holds: genres, sets, heads",
    response_model=IndexSummary,
    responses=errors(),
)
async def index_summary(gen: Gen):
    m = gen.index.manifest
    doc = {
        "name": gen.index.path.name,
        "generation": gen.number,
        "updated": m.updated or m.created,
        "items": len(gen.index.ids),
        "genres": dict(m.genre_counts),
        "sets": [
            {"modality": s.modality, "encoder": s.encoder, "count": int(len(s.rows))}
            for s in gen.index.sets
        ],
        "heads": sorted(h.name for h in m.heads),
        "head_details": [
            {"name": h.name, "method": h.method, "modality": h.modality}
            for h in sorted(m.heads, key=lambda h: h.name)
        ],
        "default_head": gen.default_head,
        "by": list(BY_CHOICES),
    }
    return answer(doc, gen)


@router.get(
    "/v1/items/{item_id}",
    summary="One movie's metadata",
    response_model=Item,
    responses=errors(404),
)
async def item(gen: Gen, item_id: IdPath):
    row = gen.index.row_of.get(item_id)
    if row is None:
        raise ApiError(
            404,
            f"No item with id {item_id!r} in this index.",
            "List ids with GET /v1/items.",
        )
    return answer(item_doc(gen, row), gen)


@router.get(
    "/v1/items",
    summary="Movies, optionally of one genre, a page at a time",
    response_model=ItemPage,
    responses=errors(),
)
async def items(
    gen: Gen,
    genre: Annotated[
        str | None, Query(max_length=64, description="Only movies of this genre.")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=500, description="Only movies whose title or id has this."),
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 24,
):
    rows = range(len(gen.index.ids))
    if genre:
        vocab = {g.lower(): j for j, g in enumerate(gen.index.genres)}
        if genre.lower() not in vocab:
            raise ApiError(
                400,
                f"Unknown genre {genre!r}.",
                "Use one of: " + ", ".join(gen.index.genres) + ".",
            )
        col = gen.index.labels[:, vocab[genre.lower()]]
        rows = [int(r) for r in col.nonzero()[0]]
    if q and q.strip():
        needle = q.strip().casefold()
        items = gen.index.items
        rows = [
            r
            for r in rows
            if needle in (items[r].get("title") or "").casefold()
            or needle in items[r]["id"].casefold()
        ]
    start = (page - 1) * per_page
    doc = {
        "page": page,
        "per_page": per_page,
        "total": len(rows),
        "items": [item_doc(gen, r, with_plot=False) for r in rows[start : start + per_page]],
    }
    return answer(doc, gen)


@router.get(
    "/v1/thumbnails/{item_id}",
    summary="The thumbnail stored in the index (JPEG)",
    response_class=JpegResponse,
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        **errors(404),
    },
)
async def thumbnail(gen: Gen, item_id: IdPath):
    data = gen.index.thumbnail(item_id) if item_id in gen.index.row_of else None
    if data is None:
        raise ApiError(
            404,
            f"No thumbnail for id {item_id!r} in this index.",
            "Check the id; some movies have no poster.",
        )
    return JpegResponse(data, headers={"Cache-Control": "public, max-age=300"})
