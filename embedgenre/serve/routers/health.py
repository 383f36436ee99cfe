"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from embedgenre.serve.models import Health, Ready, errors
from embedgenre.serve.problems import ApiError
from embedgenre.serve.routers.common import service

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", summary="200 while the process is up", response_model=Health, responses=errors()
)
async def healthz():
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="200 once the index and models are loaded",
    response_model=Ready,
    responses=errors(),
)
async def readyz(request: Request):
    svc = service(request)
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


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=PlainTextResponse,
    responses=errors(),
)
async def metrics(request: Request):
    return PlainTextResponse(
        generate_latest(service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
