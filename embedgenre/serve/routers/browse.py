"""Routes the browse page needs beyond the API's items: a movie's labelled and predicted genres
side by side, and the label audit of the index.

A movie's predicted genres come from the default head (or ``head``) scoring the movie's stored
embeddings; the audit (:func:`embedgenre.audit.audit`) fits held-out models, which takes a while
on a large index, so it runs once per index generation in a background thread: the route answers
202 with Retry-After until the result is there.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from embedgenre.audit import DEFAULT_K, audit
from embedgenre.errors import EmbedgenreError, PredictorError
from embedgenre.predict import score_inputs, voting_neighbours
from embedgenre.serve.models import ID_PATTERN, errors
from embedgenre.serve.problems import ApiError
from embedgenre.serve.routers.common import answer, generation, thumb_url
from embedgenre.serve.routers.items import IdPath
from embedgenre.serve.service import Generation

logger = logging.getLogger(__name__)

router = APIRouter()
MAX_AUDIT_K = 200


def _row(gen: Generation, item_id: str) -> int:
    row = gen.index.row_of.get(item_id)
    if row is None:
        raise ApiError(
            404, f"No item with id {item_id!r} in this index.", "List ids with GET /v1/items."
        )
    return row


def _stored(gen: Generation, modality: str, encoder: str, row: int) -> np.ndarray | None:
    emb = gen.index.get_set(modality, encoder)
    hit = np.flatnonzero(emb.rows == row)
    return np.asarray(emb.vectors[int(hit[0])], dtype=np.float32)[None, :] if len(hit) else None


def _movie_genres(gen: Generation, row: int, head: str | None) -> dict:
    item = gen.index.items[row]
    has = {
        s.modality for s in gen.index.sets if len(s.rows) and (s.rows == row).any()
    }  # the modalities this movie has a stored vector of
    try:
        q = gen.predictor(head).query_encoders("poster" in has, "plot" in has)
    except PredictorError as e:
        if head is not None:  # the head asked for: its own error
            raise
        return _without_predictions(gen, item, str(e))
    h = q.head
    pv = (
        _stored(gen, "poster", h.encoders["poster"]["encoder"], row)
        if "poster" in h.encoders
        else None
    )
    tv = _stored(gen, "plot", h.encoders["plot"]["encoder"], row) if "plot" in h.encoders else None
    scored = score_inputs(h, pv, tv, [item["id"]])[0]
    labelled = list(item.get("genres") or [])
    predicted = scored["genres"]
    why = voting_neighbours(
        gen.index,
        h,
        None if pv is None else pv[0],
        None if tv is None else tv[0],
        sorted(set(predicted) | set(labelled)),
        k=11,
    )
    why = {g: [n for n in found if n["id"] != item["id"]] for g, found in why.items()}
    return {
        **_movie(gen, item),
        "head": h.describe(),
        "labelled": labelled,
        "predicted": predicted,
        "ranking": scored["ranking"],
        "labelled_not_predicted": [g for g in labelled if g not in predicted],
        "predicted_not_labelled": [g for g in predicted if g not in labelled],
        "why": why,
        "note": "scored by a head trained on the index's labels, this movie's included; "
        "the audit scores each movie with a model that never saw it",
    }


def _movie(gen: Generation, item: dict) -> dict:
    """What the movie page shows of a movie whatever can be predicted."""
    return {
        "id": item["id"],
        "title": item.get("title"),
        "year": item.get("year"),
        "plot": item.get("plot"),
        "thumbnail": thumb_url(gen, item["id"]),
    }


def _without_predictions(gen: Generation, item: dict, why_not: str) -> dict:
    """The movie and its labelled genres where no head can score it (none trained, and
    zero-shot needs CLIP embeddings): ``head`` is None and ``no_predictions`` says why."""
    return {
        **_movie(gen, item),
        "head": None,
        "labelled": list(item.get("genres") or []),
        "predicted": [],
        "ranking": [],
        "labelled_not_predicted": [],
        "predicted_not_labelled": [],
        "why": {},
        "no_predictions": why_not,
        "note": "predicted genres need a trained head",
    }


@router.get(
    "/v1/items/{item_id}/genres",
    tags=["items"],
    summary="A movie's labelled and predicted genres, the disagreements and why",
    responses=errors(404),
)
async def movie_genres(
    request: Request,
    item_id: IdPath,
    head: Annotated[str | None, Query(max_length=128, description="A saved head's name.")] = None,
):
    gen = generation(request)
    row = _row(gen, item_id)
    return answer(await run_in_threadpool(_movie_genres, gen, row, head), gen)


class _AuditCache:
    """One audit per (generation, head), computed in a background thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done: dict[tuple, dict] = {}
        self.running: set[tuple] = set()

    def get(self, gen: Generation, head: str | None, k: int) -> dict | None:
        key = (gen.number, head)
        with self.lock:
            if key in self.done:
                return self.done[key]
            if key not in self.running:
                self.running.add(key)
                threading.Thread(
                    target=self._run, args=(gen, head, key), name="embedgenre-audit", daemon=True
                ).start()
        return None

    def _run(self, gen: Generation, head: str | None, key: tuple) -> None:
        try:
            result = audit(gen.index, head=head, k=MAX_AUDIT_K, neighbours=10)
            doc = result.to_dict()
            for f in doc["findings"]:
                f["thumbnail"] = thumb_url(gen, f["id"])
        except EmbedgenreError as e:
            doc = {"error": str(e)}
        except Exception as e:  # noqa: BLE001 (reported to the page in one line)
            logger.exception("audit failed")
            doc = {"error": f"The audit failed: {e}"}
        with self.lock:
            self.done = {k: v for k, v in self.done.items() if k[0] == key[0]}
            self.done[key] = doc
            self.running.discard(key)


@router.get(
    "/v1/audit",
    tags=["items"],
    summary="Movies whose labels look wrong or missing (202 while the audit runs)",
    responses={
        **errors(),
        202: {"description": "The audit is running; retry after the Retry-After seconds"},
    },
)
async def label_audit(
    request: Request,
    k: Annotated[int, Query(ge=1, le=MAX_AUDIT_K, description="How many movies.")] = DEFAULT_K,
    head: Annotated[
        str | None, Query(max_length=128, pattern=ID_PATTERN, description="A saved head's name.")
    ] = None,
):
    gen = generation(request)
    cache = getattr(request.app.state, "audits", None)
    if cache is None:
        cache = request.app.state.audits = _AuditCache()
    doc = cache.get(gen, head, k)
    if doc is None:
        return JSONResponse(
            {"status": "running", "fix": "Retry in a few seconds."},
            status_code=202,
            headers={"Retry-After": "2", "X-Index-Generation": str(gen.number)},
        )
    if "error" in doc:
        raise ApiError(400, doc["error"], "Train a head, or give one that fits this index.")
    return answer({**doc, "findings": doc["findings"][:k]}, gen)
