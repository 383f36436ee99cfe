"""Errors as JSON ``{"error": what went wrong, "fix": what to do}`` with the right status code.

Library errors (:class:`~embedgenre.errors.EmbedgenreError`) carry what went wrong, the fix and
the parameter at fault; the status comes from the error's kind, never from its wording. Anything else is logged with its traceback and answered with a 500 that
shows none.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from embedgenre.errors import (
    ConflictError,
    EmbedgenreError,
    NotFoundError,
    PosterError,
    PredictorError,
    RetrievalError,
    TooLargeError,
    UnavailableError,
    UnsupportedMediaError,
)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, what went wrong, the fix, and the
    request ``field`` at fault when one is."""

    def __init__(
        self,
        status: int,
        error: str,
        fix: str,
        headers: dict[str, str] | None = None,
        field: str | None = None,
    ):
        super().__init__(error)
        self.status, self.error, self.fix, self.headers = status, error, fix, headers or {}
        self.field = field


def problem(
    status: int,
    error: str,
    fix: str,
    headers: dict[str, str] | None = None,
    field: str | None = None,
):
    doc = {"error": error, "fix": fix}
    if field:
        doc["field"] = field
    return JSONResponse(doc, status_code=status, headers=headers)


# the status of each kind of library error (the first kind an error is, in this order)
_STATUS = (
    (NotFoundError, 404),
    (TooLargeError, 413),
    (UnsupportedMediaError, 415),
    (ConflictError, 409),
    (UnavailableError, 503),
)
_DEFAULT_FIX = {
    PosterError: "Send a JPEG, PNG or WebP poster within the size and pixel limits.",
    PredictorError: "Check the head name and the inputs it needs (GET /v1/index lists heads).",
    RetrievalError: "Check the id, genre and k values (GET /v1/index lists genres).",
}
# the request field of a library parameter, where the two are named differently
_FIELDS = {
    "item_id": "id",
    "posters": "poster",
    "genres": "genre",
    "exclude_genres": "exclude_genre",
}


def split_fix(message: str) -> tuple[str, str | None]:
    """``"what; fix"`` or ``"What. Fix."`` -> (what, fix); (message, None) without a fix part."""
    for sep in ("; ", ". "):
        head, found, tail = message.partition(sep)
        if found and tail.strip():
            tail = tail.strip()
            return head.rstrip(".") + ".", tail[0].upper() + tail[1:]
    return message, None


def status_of(e: EmbedgenreError) -> int:
    """The HTTP status of a library error, from its kind (400 for a plain bad input)."""
    return next((code for kind, code in _STATUS if isinstance(e, kind)), 400)


def from_library(e: EmbedgenreError, index_dir: Path | None = None) -> ApiError:
    """The ApiError for a library error; the server's index path is shown as its folder name."""

    def local(text: str) -> str:
        if index_dir is not None and str(index_dir) not in (".", ""):
            return text.replace(str(index_dir), index_dir.name)
        return text

    if e.fix:
        error, fix = local(e.what.rstrip(" ;")), local(e.fix)
    else:
        error, fix = split_fix(local(str(e)))
    default = next((f for cls, f in _DEFAULT_FIX.items() if isinstance(e, cls)), None)
    field = _FIELDS.get(e.param, e.param) if e.param else None
    return ApiError(
        status_of(e), error, fix or default or "Check the request against GET /docs.", field=field
    )


async def _api_error(request: Request, e: ApiError):
    return problem(e.status, e.error, e.fix, e.headers, e.field)


async def _library_error(request: Request, e: EmbedgenreError):
    return await _api_error(request, from_library(e, request.app.state.service.config.index_dir))


async def _validation_error(request: Request, e: RequestValidationError):
    parts, names = [], []
    for err in e.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
        if loc and loc[0] not in names:
            names.append(loc[0])
    return problem(
        400,
        "Invalid request parameters: " + "; ".join(parts) + ".",
        "Correct the named parameters; GET /docs lists each route's parameters and ranges.",
        field=names[0] if len(names) == 1 else None,  # the one parameter at fault
    )


async def _http_error(request: Request, e: StarletteHTTPException):
    if e.status_code == 404:
        return problem(
            404, f"No route {request.url.path}.", "GET /docs lists the routes.", e.headers
        )
    if e.status_code == 405:
        return problem(
            405,
            f"{request.method} is not allowed on {request.url.path}.",
            "GET /docs lists the methods of each route.",
            e.headers,
        )
    return problem(e.status_code, str(e.detail), "Check the request against GET /docs.", e.headers)


async def _unexpected(request: Request, e: Exception):
    logger.error(
        "internal error on %s %s", request.method, request.url.path, exc_info=(type(e), e, None)
    )
    return problem(
        500,
        "Internal error while answering this request (logged on the server).",
        "Retry; if it keeps failing, report it with the server log line of this request id.",
    )


def install(app) -> None:
    """Register the JSON error handlers on a FastAPI app."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(EmbedgenreError, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
