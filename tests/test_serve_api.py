"""The HTTP API as a client sees it: one prediction document under the CLI, Python and HTTP;
request and response models in the generated OpenAPI document; schemathesis against a live
server; a client generated from the served document.

One service over a copy of the fixture index with poster, plot and poster+plot heads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _serving import ServerThread, index_with_heads
from typer.testing import CliRunner

import embedgenre
from embedgenre.cli.app import app as cli
from embedgenre.serve import create_app
from embedgenre.serve.models import HeadInfo, PredictResponse

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

ROOT = Path(__file__).resolve().parents[1]

PLOT = "A detective hunts a serial killer through the rainy city."
LOCAL = "http://localhost"  # the test client's base URL: a Host the server trusts
ERROR_STATUSES = {"400", "401", "408", "431", "503", "504"}  # every route can answer these


@pytest.fixture(scope="module")
def index_dir(fixture_index_dir, tmp_path_factory):
    index = index_with_heads(fixture_index_dir, tmp_path_factory.mktemp("api") / "index")
    args = ["train", str(index), "--method", "linear", "--modality", "both", "--folds", "0"]
    result = CliRunner().invoke(cli, [*args, "--fusion", "early", "--name", "linear-both"])
    assert result.exit_code == 0, result.output
    return index


@pytest.fixture(scope="module")
def poster(fixture_dir) -> Path:
    return sorted((fixture_dir / "posters").glob("*.jpg"))[5]


# ----------------------------------------------------------------------------- one document


@pytest.mark.parametrize("explain", [False, True])
def test_one_prediction_document_from_cli_python_and_http(
    client, index_dir, poster, tmp_path, monkeypatch, explain
):
    """The same poster and plot: ``predict --json``, ``Predictor.predict(...).to_dict()`` and
    ``POST /v1/predict`` give the same document, explanations by the same switch."""
    shutil.copy(poster, tmp_path / "poster.jpg")
    monkeypatch.chdir(tmp_path)  # the poster is named "poster.jpg" on every surface
    switch = ["--explain"] if explain else []
    out = CliRunner().invoke(
        cli,
        ["predict", "poster.jpg", "--plot", PLOT, "--title", "Se7en", "--top", "5",
         "--index", str(index_dir), "--json", *switch],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    by_cli = json.loads(out.stdout)

    predictor = embedgenre.Predictor.open(index_dir)
    by_python = predictor.predict(
        posters=["poster.jpg"], plot=PLOT, title="Se7en", top=5, explain=explain
    ).to_dict()

    r = client.post(
        "/v1/predict",
        files=[("poster", ("poster.jpg", poster.read_bytes(), "image/jpeg"))],
        data={"plot": PLOT, "title": "Se7en", "top": "5", "explain": str(explain).lower()},
    )
    assert r.status_code == 200, r.text
    by_http = r.json()

    assert by_cli["head"]["name"] == "linear-both" and "notes" not in by_cli  # the plot is used
    assert by_cli == by_python == by_http
    # the document is the one the OpenAPI declares, every field named
    PredictResponse.model_validate(by_http)
    assert set(by_http) <= set(PredictResponse.model_fields)
    assert set(by_http["head"]) <= set(HeadInfo.model_fields)
    (result,) = by_http["results"]
    assert ("neighbours" in result) is explain
    if explain:
        assert set(result["neighbours"]) == set(result["genres"])


def test_explain_shows_why_in_the_cli(index_dir):
    out = CliRunner().invoke(
        cli, ["predict", "--plot", PLOT, "--index", str(index_dir), "--explain"]
    )
    assert out.exit_code == 0, out.output
    assert "why " in out.stdout


# ----------------------------------------------------------------------------- request models


@pytest.mark.parametrize(
    ("url", "kwargs", "field"),
    [
        ("/v1/predict", {"json": {"plot": PLOT, "plots": "x"}}, "plots"),
        ("/v1/predict", {"data": {"plot": PLOT, "colour": "red"}}, "colour"),
        ("/v1/similar", {"json": {"plot": PLOT, "kk": 3}}, "kk"),
        ("/v1/similar", {"data": {"plot": PLOT, "genres": "Drama"}}, "genres"),
    ],
)
def test_unknown_fields_are_refused(client, url, kwargs, field):
    r = client.post(url, **kwargs)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["field"] == field and f"unknown field {field!r}" in doc["error"].lower()
    assert "plot" in doc["fix"]  # the fields that are known


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plot": 5}, "plot"),
        ({"plot": PLOT, "top": "3"}, "top"),
        ({"plot": PLOT, "explain": 1}, "explain"),
    ],
)
def test_json_fields_have_their_declared_types(client, body, field):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


def test_json_body_with_every_field(client):
    body = {"plot": PLOT, "title": "Se7en", "head": "linear-plot", "top": 3, "explain": True}
    doc = client.post("/v1/predict", json=body).json()
    assert doc["head"]["name"] == "linear-plot"
    (result,) = doc["results"]
    assert len(result["ranking"]) == 3 and set(result["neighbours"]) == set(result["genres"])


# ----------------------------------------------------------------------------- the document


def test_openapi_declares_models_errors_and_content_types(client):
    doc = client.get("/openapi.json").json()
    assert doc["info"]["title"] == "embedgenre HTTP API"
    assert doc["info"]["version"] == embedgenre.__version__
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert ERROR_STATUSES <= set(responses), (method, path)
            assert "422" not in responses, (method, path)  # bad parameters are 400s here
            for status, answer in responses.items():
                if status[0] in "45":  # errors; a 2xx answer has a model of its own
                    assert answer["content"]["application/json"]["schema"] == problem
    assert set(doc["paths"]["/v1/thumbnails/{item_id}"]["get"]["responses"]["200"]["content"]) == {
        "image/jpeg"
    }
    assert set(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    predict = doc["paths"]["/v1/predict"]["post"]
    assert {"404", "413", "415"} <= set(predict["responses"])
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/PredictResponse"}
    body, schemas = predict["requestBody"]["content"], doc["components"]["schemas"]
    as_json = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    as_form = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schemas[as_json]["additionalProperties"] is False  # unknown fields are refused
    assert "poster" not in schemas[as_json]["properties"]
    assert schemas[as_form]["properties"]["poster"]["type"] == "array"
    assert schemas[as_form]["properties"]["top"]["type"] == "integer"  # a form has no nulls


# ----------------------------------------------------------------------------- third-party clients


@pytest.fixture(scope="module")
def live(service):
    with ServerThread(create_app(service.config, service), service.config) as server:
        yield server


def test_schemathesis_finds_no_failures(live, tmp_path):
    """Every operation fuzzed from the served document (a few examples each, bounded in time):
    no server error, and every status, content type and body as the document declares."""
    st = Path(sys.executable).with_name("schemathesis")
    if not st.exists():
        pytest.skip("schemathesis is not installed (pip install 'embedgenre[dev]')")
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,"
    checks += "response_schema_conformance"
    run = subprocess.run(
        [str(st), "run", f"{live.url}/openapi.json", "--checks", checks,
         "--max-examples", "8", "--max-time", "60", "--seed", "7", "--workers", "1",
         "--generation-database", "none", "--request-timeout", "20", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout or "passed" in run.stdout, run.stdout[-3000:]


def _generator() -> str | None:
    """An openapi-python-client executable: $OPENAPI_PYTHON_CLIENT, beside this Python, or on
    PATH (it pins older typer and httpx than embedgenre's, so it may live in its own venv)."""
    for candidate in (
        os.environ.get("OPENAPI_PYTHON_CLIENT"),
        str(ROOT / ".tools" / "bin" / "openapi-python-client"),  # made by `make test`
        str(Path(sys.executable).with_name("openapi-python-client")),
        shutil.which("openapi-python-client"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def test_generated_client_makes_a_predict_call(live, tmp_path, monkeypatch):
    generator = _generator()
    if generator is None:
        pytest.skip("openapi-python-client is not installed (set OPENAPI_PYTHON_CLIENT)")
    spec = tmp_path / "openapi.json"
    spec.write_bytes(httpx.get(f"{live.url}/openapi.json").content)
    run = subprocess.run(
        [generator, "generate", "--path", str(spec), "--output-path", str(tmp_path / "client"),
         "--meta", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{Path(generator).parent}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    if run.returncode != 0 and "network" in (run.stdout + run.stderr).lower():
        pytest.skip("openapi-python-client could not run offline: " + run.stderr[-300:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    monkeypatch.syspath_prepend(str(tmp_path))
    from client import Client
    from client.api.predict import predict as predict_call
    from client.models import PredictRequest

    with Client(base_url=live.url) as api:
        answer = predict_call.sync_detailed(
            client=api, body=PredictRequest(plot=PLOT, top=3, explain=True)
        )
    assert answer.status_code == 200, answer.content
    doc = json.loads(answer.content)
    assert doc["head"]["name"] and len(doc["results"][0]["ranking"]) == 3
    parsed = answer.parsed
    assert parsed.results[0].genres == doc["results"][0]["genres"]
