"""Reading a request's form: poster uploads (bytes in memory, sniffed and decoded within the
pixel and memory budgets) and text fields. Nothing a client sends is ever used as a filesystem
path: a file name is only a label in answers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from embedgenre.images import open_image_bytes
from embedgenre.serve.config import ServeConfig
from embedgenre.serve.limits import DecodeBudget, current_work
from embedgenre.serve.problems import ApiError

MAX_FIELD_BYTES = 64 * 1024  # a plot, a title
_LABEL_UNSAFE = re.compile(r"[^\w .()+-]")
MAX_JSON_DEPTH = 32  # arrays and objects inside each other; a request's body needs 2
_BRACKET_STEP = np.zeros(256, np.int8)
_BRACKET_STEP[list(b"[{")], _BRACKET_STEP[list(b"]}")] = 1, -1


@dataclass
class Upload:
    label: str  # shown in answers (the client's file name, cleaned), never opened
    data: bytes


@dataclass
class Form:
    posters: list[Upload] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    document: dict | None = None  # a JSON body as parsed (the route's model checks its types)

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


def label_of(filename: str | None, i: int) -> str:
    """A display label for upload ``i``: its base name, cleaned and cut to 80 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _LABEL_UNSAFE.sub("_", name).strip()[:80]
    return name or f"poster {i + 1}"


async def read_form(request: Request, config: ServeConfig) -> Form:
    """The posters and fields of a multipart, urlencoded or JSON body (size-capped upstream)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = Form()
    if ctype == "application/json":
        body = await request.body()
        if json_nesting_over(body, MAX_JSON_DEPTH):
            raise ApiError(
                400,
                f"The JSON body nests arrays or objects more than {MAX_JSON_DEPTH} deep.",
                'Send a flat object: {"plot": "...", "genre": ["...", "..."]}.',
            )
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ApiError(
                400, f"The JSON body cannot be parsed ({e}).", "Send a JSON object."
            ) from None
        if not isinstance(doc, dict):
            raise ApiError(400, "The JSON body is not an object.", 'Send {"plot": "...", ...}.')
        for name, value in doc.items():
            values = [
                str(v) for v in (value if isinstance(value, list) else [value]) if v is not None
            ]
            if len(values) > 32 or any(len(v.encode()) > MAX_FIELD_BYTES for v in values):
                raise ApiError(400, f"The field {name!r} is too long.", _form_fix(config))
            form.fields[name] = values
        form.document = doc
        return form
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded", ""):
        raise ApiError(
            415,
            f"Unsupported content type {ctype!r}.",
            "Send multipart/form-data (posters as 'poster' file fields), "
            "application/x-www-form-urlencoded or application/json.",
        )
    try:
        parsed = await request.form(
            max_files=config.max_posters, max_fields=32, max_part_size=MAX_FIELD_BYTES
        )
    except (MultiPartException, HTTPException) as e:  # Starlette wraps the first in the second
        detail = str(getattr(e, "message", None) or getattr(e, "detail", e)).rstrip(".")
        raise ApiError(400, f"The form cannot be read: {detail}.", _form_fix(config)) from None
    try:
        for name, value in parsed.multi_items():
            if isinstance(value, UploadFile):
                if name != "poster":
                    raise ApiError(400, f"Unexpected file field {name!r}.", _form_fix(config))
                data = await value.read()
                form.posters.append(Upload(label_of(value.filename, len(form.posters)), data))
            else:  # every field is kept: the route's model refuses those it does not name
                form.fields.setdefault(name, []).append(value)
    finally:
        await parsed.close()
    return form


def json_nesting_over(body: bytes, limit: int, chunk: int = 1 << 20) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep in the JSON ``body``, found
    without parsing it (a parser recurses once per level): brackets outside strings are
    counted, ``chunk`` bytes at a time. Exact for valid JSON and up to the first error of
    invalid JSON, which is as far as a parser gets."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # escaped backslashes first, then escaped quotes: the quotes left open and close strings
    codes = np.frombuffer(body.replace(b"\\\\", b"").replace(b'\\"', b""), np.uint8)
    depth = quotes = 0
    for start in range(0, len(codes), chunk):
        part = codes[start : start + chunk]
        quoted = np.cumsum(part == ord('"'), dtype=np.int64) + quotes
        steps = np.where(quoted & 1, 0, _BRACKET_STEP[part])
        levels = np.cumsum(steps, dtype=np.int64) + depth
        if levels.max() > limit:
            return True
        depth, quotes = int(levels[-1]), int(quoted[-1])
    return False


def _form_fix(config: ServeConfig) -> str:
    return (
        f"Send at most {config.max_posters} files, each in a field named 'poster', and text "
        f"fields of at most {MAX_FIELD_BYTES // 1024} kB."
    )


def decode_posters(
    uploads: list[Upload],
    config: ServeConfig,
    budget: DecodeBudget,
    draft_size: tuple[int, int] | None = None,
) -> list[Image.Image]:
    """The uploads as RGB images, at no more than twice the size the encoder needs.

    Every header is read and checked first (PosterError: 415 not an image, 413 too many pixels
    or too costly to decode), then the request's pixels are checked against its budget (413),
    and only then is anything decoded: one poster at a time, each waiting for room in the
    shared decode ``budget``, and none once the request is cancelled.
    """
    work = current_work()
    opened = [
        open_image_bytes(
            u.data,
            name=repr(u.label),
            max_pixels=config.max_pixels,
            draft_size=draft_size,
            max_decode_bytes=config.max_decode_bytes,
        )
        for u in uploads
    ]
    total = sum(o.pixels for o in opened)
    if total > config.max_request_pixels:
        raise ApiError(
            413,
            f"The {len(opened)} poster(s) of this request hold {total:,} pixels to decode, over "
            f"the {config.max_request_pixels:,} pixels a request may hold.",
            "Send fewer or smaller posters (posters need no more than ~1000 px a side; a JPEG "
            "is decoded at a reduced size).",
        )
    images = []
    for o in opened:
        with budget.hold(o.decode_bytes, work):
            images.append(o.decode())
    return images
