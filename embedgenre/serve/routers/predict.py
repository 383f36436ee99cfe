"""Genres of uploaded posters and/or a plot: the request checked, the posters decoded within the
server's limits, then ``Predictor.predict`` (the one orchestration of a prediction) in a worker
thread, answered with its document (what ``embedgenre predict --json`` prints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from embedgenre.serve.models import PredictRequest, PredictResponse, errors, upload_body
from embedgenre.serve.routers.common import answer, body_of, generation, in_thread, service
from embedgenre.serve.service import Generation, Service
from embedgenre.serve.uploads import Upload, decode_posters, read_form

router = APIRouter(tags=["predict"])

# the Predictor's timings -> the service's stage metrics
_STAGES = {"score": "score", "explain": "search"}


@router.post(
    "/v1/predict",
    summary="Genres of uploaded posters and/or a plot",
    response_model=PredictResponse,
    responses=errors(404, 413, 415),
    openapi_extra=upload_body(PredictRequest),
)
async def predict(request: Request, gen: Annotated[Generation, Depends(generation)]):
    svc = service(request)
    form = await read_form(request, svc.config)
    body = body_of(form, PredictRequest)
    doc = await in_thread(_predict, svc, gen, form.posters, body)
    return answer(doc, gen)


def _predict(svc: Service, gen: Generation, uploads: list[Upload], body: PredictRequest) -> dict:
    predictor = gen.predictor(body.head)
    images = None
    if uploads:
        # decoded at the size the head's poster encoder reads (a JPEG decodes reduced)
        q = predictor.query_encoders(True, body.plot is not None and bool(body.plot.strip()))
        transform = getattr(q.poster, "transform", None)
        draft = transform.draft_size if transform is not None else None
        with svc.metrics.timed("decode"):
            images = decode_posters(uploads, svc.config, svc.decode_budget, draft)
    result = predictor.predict(
        images,
        body.plot,
        body.title,
        top=body.top,
        explain=body.explain,
        names=[u.label for u in uploads] or None,
    )
    for step, stage in _STAGES.items():
        if step in result.timings:
            svc.metrics.stage.labels(stage).observe(result.timings[step])
    return result.to_dict()
