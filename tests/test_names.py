"""Each vocabulary declared once (embedgenre.names) and each name with one meaning."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from embedgenre.names import BY_CHOICES, FUSIONS, HEAD_MODALITIES, METHODS, SET_MODALITIES

ROOT = Path(__file__).resolve().parents[1]


def test_cli_choices_are_the_declared_vocabularies():
    from embedgenre.cli.predict import Fusion, Method, Modality

    assert tuple(m.value for m in Method) == METHODS
    assert tuple(m.value for m in Modality) == HEAD_MODALITIES
    assert tuple(f.value for f in Fusion) == FUSIONS


def _choices(prop: dict) -> tuple[str, ...]:
    options = prop.get("anyOf", [prop])
    return tuple(v for o in options for v in o.get("enum", ()))


def test_service_schemas_use_the_declared_vocabularies():
    pytest.importorskip("pydantic")
    from embedgenre.serve.models import EmbeddingSet, HeadInfo, SimilarRequest

    head = HeadInfo.model_json_schema()["properties"]
    assert _choices(head["method"]) == METHODS
    assert _choices(head["modality"]) == HEAD_MODALITIES
    assert _choices(head["fusion"]) == FUSIONS
    assert _choices(EmbeddingSet.model_json_schema()["properties"]["modality"]) == SET_MODALITIES
    assert _choices(SimilarRequest.model_json_schema()["properties"]["by"]) == BY_CHOICES


@pytest.mark.parametrize("name", ["rank", "choose_kind", "describe_index", "head_input"])
def test_a_function_name_has_one_meaning(name):
    """A module-level function name is defined in one module of the library only."""
    where = []
    for path in sorted((ROOT / "embedgenre").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
            for node in tree.body
        ):
            where.append(str(path.relative_to(ROOT)))
    assert len(where) <= 1, f"{name} is defined in {where}"
