"""What every router uses: the service and the generation a request answers from, answers with
the generation header, and request bodies checked against their model."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from embedgenre.serve.limits import current_work
from embedgenre.serve.problems import ApiError
from embedgenre.serve.service import Generation, Service
from embedgenre.serve.uploads import Form

Model = TypeVar("Model", bound=BaseModel)


def service(request: Request) -> Service:
    return request.app.state.service


def generation(request: Request) -> Generation:
    """The index generation this request answers from, to its end (503 while loading)."""
    gen = service(request).current
    if gen is None:
        raise ApiError(
            503,
            "The index is still loading.",
            "Retry in a few seconds; GET /readyz answers 200 once it is ready.",
            {"Retry-After": "2"},
        )
    return gen


def answer(doc: dict, gen: Generation) -> JSONResponse:
    """``doc`` as it is (the library's document), with the generation it came from."""
    return JSONResponse(doc, headers={"X-Index-Generation": str(gen.number)})


def thumb_url(gen: Generation, item_id: str | None) -> str | None:
    return f"/v1/thumbnails/{item_id}" if item_id in gen.with_thumbnail else None


def body_of(form: Form, model: type[Model]) -> Model:
    """The text fields of ``form`` as ``model``: a JSON body as sent (types checked strictly),
    a form's fields as text (a repeated field is a list where the model takes one). A field
    the model does not name, or a value it refuses, is a 400 naming the field."""
    if form.document is not None:
        data, strict = form.document, True
    else:
        lists = {
            name
            for name, f in model.model_fields.items()
            if getattr(f.annotation, "__origin__", None) is list
        }
        data = {n: (v if n in lists else v[-1]) for n, v in form.fields.items() if v}
        strict = False
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else None
        known = ", ".join(model.model_fields)
        if err["type"] == "extra_forbidden":
            raise ApiError(
                400, f"Unknown field {name!r}.", f"Send only these fields: {known}.", field=name
            ) from None
        value = data.get(name) if name else None
        shown = f"{name}={str(value)[:80]!r}" if name else "The body"
        raise ApiError(
            400,
            f"{shown}: {err['msg']}.",
            f"Correct {name or 'the body'}; GET /docs lists the fields and their ranges.",
            field=name,
        ) from None


async def in_thread(fn, *args):
    """``fn(*args)`` in a worker thread, counted as this request's work: it does not start if
    the request was cancelled meanwhile, and stops at its next check once it is."""
    work = current_work()
    if work is None:
        return await run_in_threadpool(fn, *args)

    def run():
        with work.running():
            work.check()
            return fn(*args)

    return await run_in_threadpool(run)
