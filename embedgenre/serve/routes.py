"""The HTTP API: health, predict, similar, search, items, thumbnails, metrics.

Routes parse and check their parameters, then run the library call in a worker thread (the
event loop never encodes or searches); encoders batch across requests underneath.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from embedgenre.predict import encode_inputs, score_inputs, voting_neighbours
from embedgenre.retrieval import BY_CHOICES
from embedgenre.serve.problems import ApiError
from embedgenre.serve.service import Generation, Service
from embedgenre.serve.uploads import Form, decode_upload, read_form

router = APIRouter()

ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_QUERY_CHARS = 500
By = Literal["poster", "plot", "both"]
KParam = Annotated[int, Query(ge=1, le=100, description="How many results (1-100).")]
GenreParam = Annotated[
    list[str], Query(description="Keep items with at least one of these genres (repeatable).")
]
ExcludeParam = Annotated[
    list[str], Query(description="Leave out items with any of these genres (repeatable).")
]
IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="An indexed movie's id.")]


def _service(request: Request) -> Service:
    return request.app.state.service


def _generation(request: Request) -> Generation:
    gen = _service(request).current
    if gen is None:
        raise ApiError(
            503,
            "The index is still loading.",
            "Retry in a few seconds; GET /readyz answers 200 once it is ready.",
            {"Retry-After": "2"},
        )
    return gen


def _json(doc: dict, gen: Generation) -> JSONResponse:
    return JSONResponse(doc, headers={"X-Index-Generation": str(gen.number)})


def _thumb_url(gen: Generation, item_id: str | None) -> str | None:
    return f"/v1/thumbnails/{item_id}" if item_id in gen.with_thumbnail else None


def _item(gen: Generation, row: int, with_plot: bool = True) -> dict:
    it = gen.index.items[row]
    doc = {
        "id": it["id"],
        "title": it.get("title"),
        "year": it.get("year"),
        "genres": list(it.get("genres") or []),
        "thumbnail": _thumb_url(gen, it["id"]),
    }
    if with_plot:
        doc["plot"] = it.get("plot")
    return doc


def _retrieval_doc(gen: Generation, result) -> dict:
    """``similar --json``'s shape; ``poster`` fields name the thumbnail URL, not a file."""
    doc = result.to_dict()
    for d in [doc["query"], doc["query"].get("matched") or {}, *doc["neighbours"]]:
        if "poster" in d and "id" in d:
            d["poster"] = _thumb_url(gen, d["id"])
    doc["query"].pop("path", None)
    return doc


def _number_field(form: Form, name: str, default, lo, hi, kind: type = int):
    """Form field ``name`` as ``kind`` (int or float) within [lo, hi]; ``default`` if absent."""
    raw = form.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:  # NaN fails the comparison too
        what = "a whole number" if kind is int else "a number"
        raise ApiError(
            400,
            f"{name}={raw!r} is not {what} in [{lo}, {hi}].",
            f"Send {name} between {lo} and {hi}.",
        )
    return value


async def _query_form(request: Request):
    """(service, generation, form, plot, title) of a predict or similar upload: a poster and/or
    a plot must be given (an empty plot is "" and is refused by the library with its reason)."""
    svc, gen = _service(request), _generation(request)
    form = await read_form(request, svc.config)
    plot, title = _text_field(form, "plot"), _text_field(form, "title")
    if not form.posters and plot is None:
        raise ApiError(
            400, "No poster and no plot given.", "Send a 'poster' file and/or a 'plot' text field."
        )
    return svc, gen, form, plot, title


def _text_field(form: Form, name: str) -> str | None:
    value = form.get(name)
    return value if value is None or value.strip() else ""


# ----------------------------------------------------------------------------- health


@router.get("/healthz", tags=["health"], summary="200 while the process is up")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="200 once the index and models are loaded")
async def readyz(request: Request):
    svc = _service(request)
    if svc.current is None:
        error = (
            f"Not ready: {svc.load_error}" if svc.load_error else "Not ready: loading the index."
        )
        raise ApiError(
            503,
            error,
            "Wait and retry; the server log says what it is loading.",
            {"Retry-After": "2"},
        )
    return {
        "status": "ready",
        "generation": svc.current.number,
        "ready_seconds": round(svc.ready_seconds or 0.0, 3),
    }


@router.get("/metrics", tags=["health"], summary="Prometheus metrics")
async def metrics(request: Request):
    return Response(
        generate_latest(_service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


# ----------------------------------------------------------------------------- index and items


@router.get("/v1/index", tags=["items"], summary="What the index holds: genres, sets, heads")
async def index_summary(request: Request):
    gen = _generation(request)
    m = gen.index.manifest
    doc = {
        "name": gen.index.path.name,
        "generation": gen.number,
        "items": len(gen.index.ids),
        "genres": dict(m.genre_counts),
        "sets": [
            {"modality": s.modality, "encoder": s.encoder, "count": int(len(s.rows))}
            for s in gen.index.sets
        ],
        "heads": sorted(h.name for h in m.heads),
        "default_head": gen.default_head,
        "by": list(BY_CHOICES),
    }
    return _json(doc, gen)


@router.get("/v1/items/{item_id}", tags=["items"], summary="One movie's metadata")
async def item(request: Request, item_id: IdPath):
    gen = _generation(request)
    row = gen.index.row_of.get(item_id)
    if row is None:
        raise ApiError(
            404, f"No item with id {item_id!r} in this index.", "List ids with GET /v1/items."
        )
    return _json(_item(gen, row), gen)


@router.get(
    "/v1/items", tags=["items"], summary="Movies, optionally of one genre, a page at a time"
)
async def items(
    request: Request,
    genre: Annotated[
        str | None, Query(max_length=64, description="Only movies of this genre.")
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 24,
):
    gen = _generation(request)
    rows = range(len(gen.index.ids))
    if genre:
        vocab = {g.lower(): j for j, g in enumerate(gen.index.genres)}
        if genre.lower() not in vocab:
            raise ApiError(
                400, f"Unknown genre {genre!r}.", "Use one of: " + ", ".join(gen.index.genres) + "."
            )
        col = gen.index.labels[:, vocab[genre.lower()]]
        rows = [int(r) for r in col.nonzero()[0]]
    start = (page - 1) * per_page
    doc = {
        "page": page,
        "per_page": per_page,
        "total": len(rows),
        "items": [_item(gen, r, with_plot=False) for r in rows[start : start + per_page]],
    }
    return _json(doc, gen)


@router.get("/v1/thumbnails/{item_id}", tags=["items"], summary="The thumbnail stored in the index")
async def thumbnail(request: Request, item_id: IdPath):
    gen = _generation(request)
    data = gen.index.thumbnail(item_id) if item_id in gen.index.row_of else None
    if data is None:
        raise ApiError(
            404,
            f"No thumbnail for id {item_id!r} in this index.",
            "Check the id; some movies have no poster.",
        )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=300"})


# ----------------------------------------------------------------------------- predict


def _form_body(properties: dict, json_too: bool = False) -> dict:
    """OpenAPI ``requestBody`` of a form route (the route reads the form itself)."""
    schema = {"type": "object", "properties": properties}
    content = {"multipart/form-data": {"schema": schema}}
    if json_too:
        texts = {k: v for k, v in properties.items() if v.get("format") != "binary"}
        texts.pop("poster", None)
        content["application/json"] = {"schema": {"type": "object", "properties": texts}}
    return {"requestBody": {"content": content}}


_TEXT = {"type": "string"}
_FILE = {"type": "string", "format": "binary"}
_PREDICT_BODY = _form_body(
    {
        "poster": {"type": "array", "items": _FILE},
        "plot": _TEXT,
        "title": _TEXT,
        "head": _TEXT,
        "top": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    json_too=True,
)
_SIMILAR_BODY = _form_body(
    {
        "poster": _FILE,
        "plot": _TEXT,
        "title": _TEXT,
        "k": {"type": "integer", "minimum": 1, "maximum": 100},
        "by": {"type": "string", "enum": list(BY_CHOICES)},
        "genre": {"type": "array", "items": _TEXT},
        "exclude_genre": {"type": "array", "items": _TEXT},
        "plot_weight": {"type": "number", "minimum": 0, "maximum": 1},
    }
)


@router.post(
    "/v1/predict",
    tags=["predict"],
    summary="Genres of uploaded posters and/or a plot",
    openapi_extra=_PREDICT_BODY,
)
async def predict(request: Request):
    svc, gen, form, plot, title = await _query_form(request)
    head = form.get("head") or None
    top = _number_field(form, "top", None, 1, 100)
    if head is not None and len(head) > 128:
        raise ApiError(400, "The head name is too long.", "GET /v1/index lists the saved heads.")
    doc = await run_in_threadpool(_predict, svc, gen, form, plot, title, head, top)
    return _json(doc, gen)


def _predict(svc: Service, gen: Generation, form: Form, plot, title, head, top) -> dict:
    q = gen.predictor(head).query_encoders(bool(form.posters), plot is not None)
    transform = getattr(q.poster, "transform", None) if form.posters else None
    with svc.metrics.timed("decode"):
        images = [
            decode_upload(u, svc.config, transform.draft_size if transform else None)
            for u in form.posters
        ]
    pv, tv = encode_inputs(q, images, plot, title)
    with svc.metrics.timed("score"):
        labels = [u.label for u in form.posters] or ["(plot)"]
        rows = score_inputs(q.head, pv, tv, labels, top)
    with svc.metrics.timed("search"):
        for i, row in enumerate(rows):
            row["neighbours"] = voting_neighbours(
                gen.index,
                q.head,
                None if pv is None else pv[i],
                None if tv is None else tv[i],
                row["genres"],
            )
    return {"head": q.head.describe(), "results": rows, "generation": gen.number}


# ----------------------------------------------------------------------------- similar, search


async def _retrieve(request: Request, gen: Generation, what: str, upload=(), **query):
    """``gen.retriever.<what>(**query)`` in a worker thread, an uploaded poster decoded first,
    answered in ``similar --json``'s shape."""
    svc = _service(request)

    def run():
        if upload:
            encoder = svc.encoders(gen.index.get_set("poster"))
            with svc.metrics.timed("decode"):
                query["poster"] = decode_upload(upload[0], svc.config, encoder.transform.draft_size)
        with svc.metrics.timed("search"):
            return getattr(gen.retriever, what)(**query)

    return _json(_retrieval_doc(gen, await run_in_threadpool(run)), gen)


@router.get("/v1/similar", tags=["similar"], summary="Movies most like an indexed movie")
async def similar(
    request: Request,
    id: Annotated[str, Query(pattern=ID_PATTERN, description="An indexed movie's id.")],
    k: KParam = 10,
    by: By = "poster",
    genre: GenreParam = [],  # noqa: B006 (FastAPI copies defaults)
    exclude_genre: ExcludeParam = [],  # noqa: B006
    plot_weight: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
):
    gen = _generation(request)
    filters = {"k": k, "genres": genre, "exclude_genres": exclude_genre}
    return await _retrieve(
        request, gen, "similar", item_id=id, by=by, plot_weight=plot_weight, **filters
    )


@router.post(
    "/v1/similar",
    tags=["similar"],
    summary="Movies most like an uploaded poster and/or a plot",
    openapi_extra=_SIMILAR_BODY,
)
async def similar_upload(request: Request):
    svc, gen, form, plot, title = await _query_form(request)
    if len(form.posters) > 1:
        raise ApiError(
            400, f"{len(form.posters)} posters sent; similar takes one.", "Send one 'poster' file."
        )
    k = _number_field(form, "k", 10, 1, svc.config.max_k)
    by = form.get("by") or ("poster" if form.posters else "plot")
    if by not in BY_CHOICES:
        raise ApiError(400, f"Unknown by={by!r}.", f"Use one of: {', '.join(BY_CHOICES)}.")
    plot_weight = _number_field(form, "plot_weight", 0.5, 0.0, 1.0, float)

    filters = {
        "k": k,
        "genres": form.get_all("genre"),
        "exclude_genres": form.get_all("exclude_genre"),
    }
    query = {"plot": plot, "title": title, "by": by, "plot_weight": plot_weight}
    return await _retrieve(request, gen, "similar", upload=form.posters[:1], **query, **filters)


@router.get("/v1/search", tags=["similar"], summary="Text to posters (CLIP) or to plots")
async def search(
    request: Request,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for.")
    ],
    k: KParam = 10,
    genre: GenreParam = [],  # noqa: B006
    exclude_genre: ExcludeParam = [],  # noqa: B006
):
    gen = _generation(request)
    return await _retrieve(
        request, gen, "search_text", text=q, k=k, genres=genre, exclude_genres=exclude_genre
    )
