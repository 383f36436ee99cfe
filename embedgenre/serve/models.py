"""The HTTP API's request and response models: the schemas of the generated OpenAPI document.

Answers are built by the library (``PredictResult.to_dict``, ``RetrievalResult.to_dict``), so
``embedgenre predict --json`` and ``POST /v1/predict`` print one document; these models describe
those documents (with the library's own dataclasses where it has them) and check what clients
send. Request bodies refuse fields they do not name.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from embedgenre.names import FusionName, HeadModality, MethodName, SearchBy, SetModality
from embedgenre.predict import Prediction
from embedgenre.retrieval import RetrievalResult

ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_TEXT_CHARS = 64 * 1024  # a plot, a title (uploads.py caps each field at 64 kB too)
MAX_LIST = 32  # values of a repeated field

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
GenreName = Annotated[str, StringConstraints(max_length=64)]
By = SearchBy


class Problem(BaseModel):
    """Every answer other than success."""

    error: str = Field(description="What went wrong.")
    fix: str = Field(description="What to do about it.")
    field: str | None = Field(None, description="The request field at fault, when one is.")


# ----------------------------------------------------------------------------- requests


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Body):
    """``POST /v1/predict`` as JSON (no posters) or the text fields of its form."""

    plot: Text | None = Field(None, description="A synopsis.")
    title: Text | None = Field(None, description="The movie's title; goes with plot.")
    head: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        None, description="A saved head (GET /v1/index lists them); default: the best that fits."
    )
    top: int | None = Field(
        None, ge=1, le=100, description="Rank the K best genres (every predicted one is listed)."
    )
    explain: bool = Field(
        False, description="Add, per predicted genre, the nearest labelled movies that carry it."
    )


class SimilarRequest(_Body):
    """``POST /v1/similar`` as JSON (no poster) or the text fields of its form."""

    plot: Text | None = Field(None, description="A synopsis.")
    title: Text | None = Field(None, description="The movie's title; goes with plot.")
    k: int = Field(10, ge=1, le=100, description="How many results.")
    by: By | None = Field(None, description="Compare posters, plots or both.")
    genre: list[GenreName] = Field(
        default_factory=list, max_length=MAX_LIST, description="Keep movies of these genres."
    )
    exclude_genre: list[GenreName] = Field(
        default_factory=list, max_length=MAX_LIST, description="Leave out these genres."
    )
    plot_weight: float = Field(0.5, ge=0.0, le=1.0, description="With by=both: the plot's share.")


# ----------------------------------------------------------------------------- answers


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    generation: int
    ready_seconds: float


class EmbeddingSet(BaseModel):
    modality: SetModality
    encoder: str
    count: int


class HeadBrief(BaseModel):
    name: str
    method: str | None = Field(description="How the head predicts (linear, mlp, knn, ...).")
    modality: str | None = Field(description="What it scores: poster, plot or both.")


class IndexSummary(BaseModel):
    name: str
    generation: int
    updated: str | None = Field(description="When the index last changed (ISO 8601, UTC).")
    items: int
    genres: dict[str, int] = Field(description="Movies per genre.")
    sets: list[EmbeddingSet]
    heads: list[str]
    head_details: list[HeadBrief] = Field(description="Each saved head's method and modality.")
    default_head: str | None
    by: list[str]


class ItemSummary(BaseModel):
    id: str
    title: str | None
    year: int | None
    genres: list[str]
    thumbnail: str | None = Field(description="URL of the stored thumbnail, if any.")


class Item(ItemSummary):
    plot: str | None


class ItemPage(BaseModel):
    page: int
    per_page: int
    total: int
    items: list[ItemSummary]


class HeadInfo(BaseModel):
    name: str
    method: MethodName
    modality: HeadModality
    fusion: FusionName | None = None
    encoders: dict[str, str]
    validation: dict[str, Any] | None = None
    saved: bool = Field(description="Whether the head is saved in the index (else fitted now).")
    unscored_genres: list[str] = Field(
        default_factory=list, description="Genres of the index this head was not trained on."
    )


class PredictResponse(BaseModel):
    """What ``embedgenre predict --json`` prints for the same inputs."""

    head: HeadInfo
    results: list[Prediction]
    notes: list[str] | None = Field(None, description="What was given but not used.")


def _response_of(result: type, name: str, doc: str, leave_out: tuple[str, ...]) -> type[BaseModel]:
    """A response model whose fields (all required) are those of the library's ``result``
    dataclass but ``leave_out``: the document ``to_dict`` writes is declared once, there."""
    hints = get_type_hints(result)
    fields = {f.name: (hints[f.name], ...) for f in dataclasses.fields(result)}
    kept = {field: spec for field, spec in fields.items() if field not in leave_out}
    return create_model(name, __doc__=doc, __module__=__name__, **kept)


RetrievalResponse = _response_of(
    RetrievalResult,
    "RetrievalResponse",
    "What ``embedgenre similar --json`` prints (posters as thumbnail URLs).",
    leave_out=("thumbnails",),
)


# ----------------------------------------------------------------------------- documentation

_STATUS_TEXT = {
    400: "The request cannot be used as sent (a parameter, a field, the Host header).",
    401: "A bearer token is required and was missing or wrong.",
    404: "No such movie, thumbnail or head.",
    408: "The request head was not received in time.",
    413: "The body or a poster is over a size or pixel limit.",
    415: "Not a content type or an image that is read.",
    431: "The request head is too large.",
    503: "The index is still loading, or the server is busy (see Retry-After).",
    504: "The request took longer than the server's time limit.",
}
COMMON = (400, 401, 408, 431, 503, 504)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: the common error statuses and ``statuses``, each with the
    :class:`Problem` body."""
    return {
        s: {"model": Problem, "description": _STATUS_TEXT[s]} for s in sorted({*COMMON, *statuses})
    }


def _form_schema(model: type[BaseModel], posters: bool) -> dict[str, Any]:
    """``model``'s fields as a form, with one (``posters`` False) or more poster files; a
    form's fields are absent or text, so a null alternative means nothing there."""
    schema = model.model_json_schema()
    props = {n: _not_null(p) for n, p in schema["properties"].items()}
    binary = {"type": "string", "format": "binary"}
    props["poster"] = (
        {"type": "array", "items": binary, "description": "Poster image files."}
        if posters
        else {**binary, "description": "A poster image file."}
    )
    return {**schema, "properties": props, "title": schema["title"].replace("Request", "Form")}


# request bodies: JSON as the model, a form with poster files beside its fields
BODIES: dict[str, tuple[type[BaseModel], bool]] = {
    "PredictRequest": (PredictRequest, True),
    "SimilarRequest": (SimilarRequest, False),
}


def upload_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an upload route: ``model`` as JSON or as a form with
    poster files (their schemas are components, added by :func:`tidy_openapi`)."""
    name = model.__name__
    ref = "#/components/schemas/"
    return {
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": {"$ref": ref + name.replace("Request", "Form")}},
                "application/json": {"schema": {"$ref": ref + name}},
            }
        }
    }


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
    if len(options) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    return {**options[0], **rest}


def tidy_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """The generated document without FastAPI's 422 answers (a parameter out of range is a
    400 with the :class:`Problem` body here, as every route declares), and with errors as JSON
    on routes whose success is another type (FastAPI gives them the success's type)."""
    problem = {"$ref": "#/components/schemas/Problem"}
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            responses = op.get("responses", {})
            responses.pop("422", None)
            for status, answer in responses.items():
                content = answer.get("content", {})
                if status != "200" and any(c.get("schema") == problem for c in content.values()):
                    answer["content"] = {"application/json": {"schema": problem}}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name, (model, posters) in BODIES.items():
        schemas[name] = model.model_json_schema()
        schemas[name.replace("Request", "Form")] = _form_schema(model, posters)
    return doc
