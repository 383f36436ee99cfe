"""The FastAPI app: the service loaded at startup, the guard, CORS when asked, JSON errors, the
API routes, and the web page with its local assets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from embedgenre import __version__
from embedgenre.serve import problems
from embedgenre.serve.batching import Overloaded
from embedgenre.serve.config import ServeConfig
from embedgenre.serve.guard import BodyTooLarge, Guard
from embedgenre.serve.limits import Cancelled
from embedgenre.serve.models import tidy_openapi
from embedgenre.serve.routers import ROUTERS
from embedgenre.serve.service import Service

logger = logging.getLogger(__name__)

STATIC = Path(str(files("embedgenre.serve") / "static"))


async def _overloaded(request, e: Overloaded):
    request.app.state.service.metrics.rejected.labels("overload").inc()
    return problems.problem(
        503,
        f"The server is busy ({e}).",
        f"Retry after {e.retry_after} s.",
        {"Retry-After": str(e.retry_after)},
    )


async def _too_large(request, e: BodyTooLarge):
    cap = request.app.state.service.config.max_upload_bytes
    return problems.problem(
        413,
        f"The request body is over the {cap / 2**20:.0f} MB limit.",
        "Send a smaller poster (a few hundred kB is plenty).",
    )


async def _cancelled(request, e: Cancelled):
    # only a client still listening reads this (one that left, or a request past its time limit,
    # hears nothing more)
    return problems.problem(503, f"The server stopped this request: {e}.", "Retry the request.")


def create_app(
    config: ServeConfig,
    service: Service | None = None,
    on_load_error: Callable[[str], None] | None = None,
) -> FastAPI:
    """An app serving ``config.index_dir``. The index loads in the background once the app
    starts (/healthz answers at once, /readyz 503 until loaded); a load that fails is logged in
    one line and passed to ``on_load_error`` (the CLI stops the server). ``service`` may be
    given already started (its owner closes it)."""
    owned = service is None
    service = service or Service(config)

    def load() -> None:
        try:
            service.start()
        except Exception as e:  # noqa: BLE001 (reported as one line, not a traceback)
            service.load_error = str(e)
            logger.error("cannot serve %s: %s", config.index_dir, e)
            if on_load_error is not None:
                on_load_error(str(e))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if service.current is None:
            threading.Thread(target=load, name="embedgenre-load", daemon=True).start()
        try:
            yield
        finally:
            if owned:
                await run_in_threadpool(service.close)

    app = FastAPI(
        title="embedgenre HTTP API",
        summary="Genres of a movie from its poster and plot; movies like it.",
        version=__version__,
        generate_unique_id_function=lambda route: route.name,  # operation ids: predict, ...
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = tidy_openapi(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi
    problems.install(app)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(Cancelled, _cancelled)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return FileResponse(STATIC / "docs.html", headers={"Cache-Control": "no-cache"})

    app.add_middleware(Guard, config=config, metrics=service.metrics)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Index-Generation", "Retry-After"],
        )
    return app
