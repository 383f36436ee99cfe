"""Movies like an indexed movie, an uploaded poster or a plot, and text search: the request
checked, then the retriever (the one orchestration of similar and search) in a worker thread,
answered in ``embedgenre similar --json``'s shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from embedgenre.serve.models import (
    ID_PATTERN,
    By,
    RetrievalResponse,
    SimilarRequest,
    errors,
    upload_body,
)
from embedgenre.serve.problems import ApiError
from embedgenre.serve.routers.common import (
    answer,
    body_of,
    generation,
    in_thread,
    service,
    thumb_url,
)
from embedgenre.serve.service import Generation
from embedgenre.serve.uploads import decode_posters, read_form

router = APIRouter(tags=["similar"])

MAX_QUERY_CHARS = 500
Gen = Annotated[Generation, Depends(generation)]
KParam = Annotated[int, Query(ge=1, le=100, description="How many results (1-100).")]
GenreParam = Annotated[
    list[str], Query(description="Keep items with at least one of these genres (repeatable).")
]
ExcludeParam = Annotated[
    list[str], Query(description="Leave out items with any of these genres (repeatable).")
]


def _retrieval_doc(gen: Generation, result) -> dict:
    """``similar --json``'s shape; ``poster`` fields name the thumbnail URL, not a file."""
    doc = result.to_dict()
    for d in [doc["query"], doc["query"].get("matched") or {}, *doc["neighbours"]]:
        if "poster" in d and "id" in d:
            d["poster"] = thumb_url(gen, d["id"])
    doc["query"].pop("path", None)
    return doc


async def _retrieve(request: Request, gen: Generation, what: str, upload=(), **query):
    """``gen.retriever.<what>(**query)`` in a worker thread, an uploaded poster decoded first."""
    svc = service(request)

    def run():
        if upload:
            encoder = svc.encoders(gen.index.get_set("poster"))
            with svc.metrics.timed("decode"):
                draft = encoder.transform.draft_size
                query["poster"] = decode_posters(upload, svc.config, svc.decode_budget, draft)[0]
        with svc.metrics.timed("search"):
            return getattr(gen.retriever, what)(**query)

    return answer(_retrieval_doc(gen, await in_thread(run)), gen)


@router.get(
    "/v1/similar",
    summary="Movies most like an indexed movie",
    response_model=RetrievalResponse,
    responses=errors(404),
)
async def similar(
    request: Request,
    gen: Gen,
    id: Annotated[str, Query(pattern=ID_PATTERN, description="An indexed movie's id.")],
    k: KParam = 10,
    by: By = "poster",
    genre: GenreParam = [],  # noqa: B006 (FastAPI copies defaults)
    exclude_genre: ExcludeParam = [],  # noqa: B006
    plot_weight: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
):
    filters = {"k": k, "genres": genre, "exclude_genres": exclude_genre}
    return await _retrieve(
        request, gen, "similar", item_id=id, by=by, plot_weight=plot_weight, **filters
    )


@router.post(
    "/v1/similar",
    summary="Movies most like an uploaded poster and/or a plot",
    response_model=RetrievalResponse,
    responses=errors(413, 415),
    openapi_extra=upload_body(SimilarRequest),
)
async def similar_upload(request: Request, gen: Gen):
    svc = service(request)
    form = await read_form(request, svc.config)
    body = body_of(form, SimilarRequest)
    if len(form.posters) > 1:
        raise ApiError(
            400,
            f"{len(form.posters)} posters sent; similar takes one.",
            "Send one 'poster' file.",
        )
    if not form.posters and body.plot is None:
        raise ApiError(
            400, "No poster and no plot given.", "Send a 'poster' file and/or a 'plot' text field."
        )
    if body.k > svc.config.max_k:
        raise ApiError(
            400, f"k={body.k} is over {svc.config.max_k}.", f"Send k up to {svc.config.max_k}."
        )
    query = {
        "plot": body.plot,
        "title": body.title,
        "by": body.by or ("poster" if form.posters else "plot"),
        "plot_weight": body.plot_weight,
        "k": body.k,
        "genres": body.genre,
        "exclude_genres": body.exclude_genre,
    }
    return await _retrieve(request, gen, "similar", upload=form.posters[:1], **query)


@router.get(
    "/v1/search",
    summary="Text to posters (CLIP) or to plots",
    response_model=RetrievalResponse,
    responses=errors(),
)
async def search(
    request: Request,
    gen: Gen,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for.")
    ],
    k: KParam = 10,
    genre: GenreParam = [],  # noqa: B006
    exclude_genre: ExcludeParam = [],  # noqa: B006
):
    return await _retrieve(
        request, gen, "search_text", text=q, k=k, genres=genre, exclude_genres=exclude_genre
    )
