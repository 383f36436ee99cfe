"""`embedgenre serve`: every route, every bad input, the token, limits, batching, metrics.

One module-scoped service over a copy of the fixture index with a poster head and a plot head;
FastAPI's TestClient talks to it in process (no socket).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _catalogs import png_header_only
from _chromium import NO_BROWSER, browser
from _serving import index_with_heads, page_in_chromium
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from embedgenre.cli.app import app as cli
from embedgenre.predict import Predictor
from embedgenre.serve import ServeConfig, check_bind, create_app, read_token_file
from embedgenre.serve.batching import MicroBatcher, Overloaded
from embedgenre.serve.config import ServeError
from embedgenre.serve.uploads import json_nesting_over

PLOT = "A detective hunts a serial killer through the rainy city."
TOKEN = "s3cret-token-for-tests-0123456789"
LOCAL = "http://localhost"  # the test client's base URL: a Host the server trusts


@pytest.fixture(scope="module")
def index_dir(fixture_index_dir, tmp_path_factory):
    return index_with_heads(fixture_index_dir, tmp_path_factory.mktemp("serve") / "index")


@pytest.fixture(scope="module")
def poster(fixture_dir):
    """(path, bytes) of a fixture poster."""
    path = sorted((fixture_dir / "posters").glob("*.jpg"))[3]
    return path, path.read_bytes()


def _problem(r, status: int, match: str = "") -> dict:
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) - {"field"} == {"error", "fix"} and doc["error"] and doc["fix"], doc
    assert "Traceback" not in r.text
    assert match.lower() in doc["error"].lower(), doc
    return doc


# ----------------------------------------------------------------------------- routes


def test_health_index_items_and_thumbnails(client, service):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["generation"] == service.current.number
    info = client.get("/v1/index").json()
    assert info["items"] == 110 and set(info["heads"]) == {"linear-poster", "linear-plot"}
    page = client.get("/v1/items", params={"genre": "drama", "page": 2, "per_page": 5}).json()
    assert page["total"] == info["genres"]["Drama"] and len(page["items"]) == 5
    assert all("Drama" in it["genres"] for it in page["items"])
    first = page["items"][0]
    one = client.get(f"/v1/items/{first['id']}").json()
    assert (
        one["id"] == first["id"]
        and one["plot"]
        and one["thumbnail"] == f"/v1/thumbnails/{first['id']}"
    )
    r = client.get(one["thumbnail"])
    assert (
        r.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(r.content)).height > 50
    )
    r = client.get("/v1/items", params={"page": 1000})
    assert r.status_code == 200 and r.json()["items"] == []


def test_similar_by_id_is_the_cli_json(client, index_dir):
    first = client.get("/v1/items").json()["items"][0]["id"]
    r = client.get("/v1/similar", params={"id": first, "k": 5, "by": "both"})
    assert r.status_code == 200 and r.headers["x-index-generation"]
    api = r.json()
    out = CliRunner().invoke(
        cli,
        ["similar", "--id", first, "-k", "5", "--by", "both", "--index", str(index_dir), "--json"],
    )
    assert out.exit_code == 0, out.output
    want = json.loads(out.stdout)
    # the same answer; poster fields name the thumbnail URL instead of a file on the server
    for d in [want["query"], *want["neighbours"]]:
        d["poster"] = f"/v1/thumbnails/{d['id']}"
    assert api == want
    filtered = client.get(
        "/v1/similar", params=[("id", first), ("genre", "Comedy"), ("exclude_genre", "Drama")]
    ).json()
    assert filtered["neighbours"] and all(
        "Comedy" in n["genres"] and "Drama" not in n["genres"] for n in filtered["neighbours"]
    )


def test_search_says_what_it_searched(client):
    doc = client.get("/v1/search", params={"q": "a haunted house", "k": 4}).json()
    assert doc["by"] == "plot" and len(doc["neighbours"]) == 4
    assert any("text -> plots" in n for n in doc["notes"])


def test_predict_poster_matches_the_library_and_shows_its_voters(client, index_dir, poster):
    path, data = poster
    r = client.post(
        "/v1/predict",
        files=[("poster", ("mine.jpg", data, "image/jpeg"))],
        data={"explain": "true"},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["head"]["name"] == "linear-poster"
    (res,) = doc["results"]
    assert res["input"] == "mine.jpg"
    want = Predictor.open(index_dir).predict(posters=[path]).results[0]
    assert res["genres"] == want.genres
    got = {g["genre"]: g["score"] for g in res["ranking"]}
    for g in want.ranking:
        assert got[g.genre] == pytest.approx(g.score, abs=2e-3)
    assert set(res["neighbours"]) == set(res["genres"])
    for genre, voters in res["neighbours"].items():
        for v in voters:
            item = client.get(f"/v1/items/{v['id']}").json()
            assert genre in item["genres"] and -1 <= v["score"] <= 1


def test_predict_plot_with_title_and_two_posters(client, poster, fixture_dir):
    doc = client.post("/v1/predict", data={"plot": PLOT, "title": "Se7en", "top": 3}).json()
    assert doc["head"]["name"] == "linear-plot" and len(doc["results"][0]["ranking"]) == 3
    other = sorted((fixture_dir / "posters").glob("*.jpg"))[7].read_bytes()
    files = [
        ("poster", ("a.jpg", poster[1], "image/jpeg")),
        ("poster", ("b.jpg", other, "image/jpeg")),
    ]
    doc = client.post("/v1/predict", files=files, data={"head": "linear-poster"}).json()
    assert [r["input"] for r in doc["results"]] == ["a.jpg", "b.jpg"]
    assert doc["results"][0]["ranking"] != doc["results"][1]["ranking"]
    doc = client.post("/v1/predict", json={"plot": PLOT}).json()
    assert doc["head"]["name"] == "linear-plot"


def test_similar_to_an_upload(client, poster):
    doc = client.post(
        "/v1/similar", files={"poster": ("x.jpg", poster[1], "image/jpeg")}, data={"k": 3}
    ).json()
    assert doc["query"]["kind"] == "upload" and len(doc["neighbours"]) == 3
    # the upload is an indexed poster: it is recognised and never its own neighbour
    matched = doc["query"]["matched"]["id"]
    assert matched == poster[0].stem and matched not in [n["id"] for n in doc["neighbours"]]
    doc = client.post("/v1/similar", data={"plot": PLOT, "k": 3}).json()
    assert doc["by"] == "plot" and len(doc["neighbours"]) == 3


def test_metrics_page_and_docs(client):
    client.post("/v1/predict", data={"plot": PLOT})
    client.post("/v1/similar", data={"plot": PLOT, "k": 3})  # a search stage of its own
    text = client.get("/metrics").text
    for name in (
        'embedgenre_requests_total{method="POST",route="/v1/predict",status="200"}',
        'embedgenre_request_seconds_bucket{le="0.5",route="/v1/predict"}',
        'embedgenre_stage_seconds_count{stage="encode"}',
        'embedgenre_stage_seconds_count{stage="search"}',
        'embedgenre_batch_size_count{kind="text"}',
        "embedgenre_index_generation",
    ):
        assert name in text, name
    page = client.get("/")
    assert page.status_code == 200 and 'id="predict-form"' in page.text
    for asset in ("/static/app.js", "/static/style.css", "/static/docs.js"):
        body = client.get(asset).text
        assert "http://" not in body and "https://" not in body, asset  # no CDN, nothing remote
    assert "https://" not in page.text and "https://" not in client.get("/docs").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/similar", "/v1/search", "/v1/items/{item_id}", "/metrics"} <= set(
        paths
    )


# ----------------------------------------------------------------------------- bad input


def _text_named_jpg():
    return {"poster": ("poster.jpg", b"just some text, not an image\n" * 20, "image/jpeg")}


def _bomb():
    return {"poster": ("bomb.png", png_header_only(30000, 30000), "image/png")}


def _truncated(data):
    return {"poster": ("cut.jpg", data[: len(data) // 3], "image/jpeg")}


BAD = [
    ("no input", "post", "/v1/predict", {}, 400, "no poster and no plot"),
    ("empty plot", "post", "/v1/predict", {"data": {"plot": "   "}}, 400, "plot text is empty"),
    ("title only", "post", "/v1/predict", {"data": {"title": "Heat"}}, 400, "title goes with"),
    (
        "unknown head",
        "post",
        "/v1/predict",
        {"data": {"plot": PLOT, "head": "nope"}},
        404,
        "no head named",
    ),
    (
        "head as path",
        "post",
        "/v1/predict",
        {"data": {"plot": PLOT, "head": "../../etc"}},
        400,
        "not a plain name",
    ),
    ("top 0", "post", "/v1/predict", {"data": {"plot": PLOT, "top": "0"}}, 400, "top="),
    ("top text", "post", "/v1/predict", {"data": {"plot": PLOT, "top": "many"}}, 400, "top="),
    (
        "text file named .jpg",
        "post",
        "/v1/predict",
        {"files": _text_named_jpg()},
        415,
        "not an image",
    ),
    ("pixel bomb", "post", "/v1/predict", {"files": _bomb()}, 413, "pixel"),
    (
        "wrong field",
        "post",
        "/v1/predict",
        {"files": {"image": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")}},
        400,
        "unexpected file field",
    ),
    ("huge plot", "post", "/v1/predict", {"data": {"plot": "x" * 70_000}}, 400, "cannot be read"),
    ("huge json plot", "post", "/v1/predict", {"json": {"plot": "x" * 70_000}}, 400, "too long"),
    (
        "many fields",
        "post",
        "/v1/predict",
        {"data": {f"f{i}": "1" for i in range(40)}},
        400,
        "cannot",
    ),
    (
        "bad json",
        "post",
        "/v1/predict",
        {"content": b"{", "headers": {"content-type": "application/json"}},
        400,
        "json",
    ),
    (
        "xml",
        "post",
        "/v1/predict",
        {"content": b"<a/>", "headers": {"content-type": "application/xml"}},
        415,
        "content type",
    ),
    ("unknown id", "get", "/v1/similar", {"params": {"id": "tt9999999"}}, 404, "no item with id"),
    ("id as path", "get", "/v1/similar", {"params": {"id": "../../etc/passwd"}}, 400, "id"),
    ("no id", "get", "/v1/similar", {}, 400, "id"),
    ("k 0", "get", "/v1/similar", {"params": {"id": "tt0311429", "k": 0}}, 400, "k"),
    ("k 101", "get", "/v1/similar", {"params": {"id": "tt0311429", "k": 101}}, 400, "k"),
    ("bad by", "get", "/v1/similar", {"params": {"id": "tt0311429", "by": "smell"}}, 400, "by"),
    (
        "unknown genre",
        "get",
        "/v1/similar",
        {"params": {"id": "tt0311429", "genre": "Polka"}},
        400,
        "unknown genre",
    ),
    (
        "weight 2",
        "get",
        "/v1/similar",
        {"params": {"id": "tt0311429", "plot_weight": 2}},
        400,
        "plot_weight",
    ),
    (
        "similar two posters",
        "post",
        "/v1/similar",
        {"files": [("poster", ("a.jpg", b"x", "image/jpeg"))] * 2},
        400,
        "2 posters",
    ),
    ("similar nothing", "post", "/v1/similar", {"data": {"k": "3"}}, 400, "no poster"),
    ("similar k", "post", "/v1/similar", {"data": {"plot": PLOT, "k": "1000"}}, 400, "k="),
    ("similar by", "post", "/v1/similar", {"data": {"plot": PLOT, "by": "x"}}, 400, "by="),
    (
        "similar by poster without one",
        "post",
        "/v1/similar",
        {"data": {"plot": PLOT, "by": "poster"}},
        400,
        "no poster",
    ),
    (
        "similar text as poster",
        "post",
        "/v1/similar",
        {"files": _text_named_jpg()},
        415,
        "not an image",
    ),
    ("empty search", "get", "/v1/search", {"params": {"q": ""}}, 400, "q"),
    ("long search", "get", "/v1/search", {"params": {"q": "x" * 501}}, 400, "q"),
    ("unknown item", "get", "/v1/items/tt0000001", {}, 404, "no item"),
    ("item genre", "get", "/v1/items", {"params": {"genre": "Polka"}}, 400, "unknown genre"),
    ("page 0", "get", "/v1/items", {"params": {"page": 0}}, 400, "page"),
    ("no thumbnail", "get", "/v1/thumbnails/tt0000001", {}, 404, "no thumbnail"),
    ("traversal", "get", "/v1/thumbnails/..%2F..%2Fmanifest.json", {}, 404, "no route"),
    ("odd id", "get", "/v1/thumbnails/a%20b", {}, 400, "item_id"),
    ("static traversal", "get", "/static/../../../etc/passwd", {}, 404, "no route"),
    ("no route", "get", "/v2/predict", {}, 404, "no route"),
    ("wrong method", "delete", "/v1/predict", {}, 405, "not allowed"),
]


@pytest.mark.parametrize(
    ("name", "method", "url", "kwargs", "status", "match"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_requests_get_json_errors(client, name, method, url, kwargs, status, match):
    doc = _problem(getattr(client, method)(url, **kwargs), status, match)
    # the field at fault is named by the request's own name for it
    expected_field = {
        "unknown id": "id",
        "unknown head": "head",
        "no input": "poster",
        "empty plot": "plot",
        "title only": "title",
        "top 0": "top",
        "top text": "top",
        "similar k": "k",
        "similar by": "by",
        "id as path": "id",
        "no id": "id",
        "k 0": "k",
        "k 101": "k",
        "bad by": "by",
        "weight 2": "plot_weight",
        "empty search": "q",
        "long search": "q",
        "page 0": "page",
        "odd id": "item_id",
        "unknown genre": "genre",
        "similar by poster without one": "by",
    }.get(name)
    assert doc.get("field") == expected_field, doc


def test_truncated_poster(client, poster):
    _problem(client.post("/v1/predict", files=_truncated(poster[1])), 400, "truncated or corrupt")


def test_upload_cap_is_checked_before_the_body_is_read(client):
    big = b"\xff\xd8\xff" + b"\0" * (11 * 1024 * 1024)
    _problem(
        client.post("/v1/predict", files={"poster": ("big.jpg", big, "image/jpeg")}),
        413,
        "over the 10 mb limit",
    )
    read = []

    def body():  # a chunked upload without Content-Length: counted while it is read
        for _ in range(12):
            read.append(1)
            yield b"\0" * (1024 * 1024)

    r = client.post(
        "/v1/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    _problem(r, 413, "limit")
    lying = client.post(
        "/v1/predict",
        content=b"\0" * 100,
        headers={"content-length": str(50 * 1024 * 1024), "content-type": "image/jpeg"},
    )
    assert lying.status_code == 413


def test_index_is_only_read(client, index_dir, poster):
    def snapshot():
        return sorted(
            (str(p.relative_to(index_dir)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in index_dir.rglob("*")
        )

    before = snapshot()
    client.post(
        "/v1/predict", files={"poster": ("p.jpg", poster[1], "image/jpeg")}, data={"plot": PLOT}
    )
    client.get("/v1/search", params={"q": "war"})
    client.post("/v1/similar", data={"plot": PLOT})
    assert snapshot() == before


# ----------------------------------------------------------------------------- token, bind, CORS


def test_token_is_required_when_configured(service, index_dir, tmp_path):
    config = ServeConfig(index_dir=index_dir, host="0.0.0.0", token=TOKEN)
    with TestClient(create_app(config, service), base_url=LOCAL) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
        _problem(c.get("/v1/index"), 401, "token")
        _problem(c.get("/metrics"), 401, "token")
        _problem(c.get("/v1/index", headers={"Authorization": "Bearer wrong"}), 401, "token")
        _problem(c.get("/v1/index", headers={"Authorization": f"Basic {TOKEN}"}), 401, "token")
        r = c.get("/v1/index", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.headers["www-authenticate" if False else "x-request-id"]


def test_host_must_be_a_name_the_server_answers_to(service, index_dir):
    """A page elsewhere whose name was pointed at this machine (DNS rebinding) is refused."""
    loopback = ServeConfig(index_dir=index_dir)
    with TestClient(create_app(loopback, service), base_url="http://rebound.example:8000") as c:
        doc = _problem(c.get("/v1/index"), 400, "'rebound.example:8000' is not a name")
        assert "--allowed-host" in doc["fix"]
        _problem(c.get("/healthz"), 400, "host")
        _problem(c.get("/healthz", headers={"Host": "localhost.rebound.example"}), 400, "host")
        for host in ("localhost:8000", "LOCALHOST", "127.0.0.1", "127.0.0.1:80", "[::1]:9"):
            assert c.get("/healthz", headers={"Host": host}).status_code == 200, host
    exposed = ServeConfig(
        index_dir=index_dir,
        host="0.0.0.0",
        token=TOKEN,
        allowed_hosts=("genres.example", "Other.Example:8443", "fd00::5"),
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(exposed, service), base_url="http://genres.example") as c:
        assert c.get("/v1/index", headers=auth).status_code == 200
        for host in ("other.example:1", "[fd00::5]:8000", "localhost"):
            assert c.get("/healthz", headers={"Host": host}).status_code == 200, host
        _problem(c.get("/v1/index", headers={**auth, "Host": "evil.example"}), 400, "evil")
        _problem(c.get("/v1/index", headers={"Host": "0.0.0.0:8000"}), 400, "host")
    bound = ServeConfig(index_dir=index_dir, host="192.168.7.5", token=TOKEN)
    with TestClient(create_app(bound, service), base_url="http://192.168.7.5:8000") as c:
        assert c.get("/healthz").status_code == 200
    anyone = ServeConfig(index_dir=index_dir, allowed_hosts=("*",))
    with TestClient(create_app(anyone, service), base_url="http://rebound.example") as c:
        assert c.get("/healthz").status_code == 200


def test_serve_command_passes_allowed_hosts_and_head_limits(index_dir, monkeypatch):
    import uvicorn

    from embedgenre.serve import service as service_module
    from embedgenre.serve.server import HeadLimitedProtocol

    ran = []

    def run(server):
        ran.append(server.config)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(service_module, "one_blas_thread_per_request", lambda: None)
    args = ["serve", str(index_dir), "--allowed-host", "genres.example"]
    out = CliRunner().invoke(cli, [*args, "--allowed-host", "films.example:8443"])
    assert out.exit_code == 0, out.output
    config = ran[0].app.state.service.config
    assert {"genres.example", "films.example", "localhost"} <= config.trusted_hosts()
    assert "rebound.example" not in config.trusted_hosts()
    protocol = ran[0].http
    assert issubclass(protocol, HeadLimitedProtocol) and protocol.max_header_bytes == 64 * 1024


def _nested(depth: int) -> bytes:
    return b'{"plot": ' + b"[" * depth + b'"x"' + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [33, 1000, 200_000])
def test_deep_json_is_one_400(client, depth, caplog):
    r = client.post(
        "/v1/predict", content=_nested(depth), headers={"Content-Type": "application/json"}
    )
    _problem(r, 400, "more than 32 deep")
    assert "RecursionError" not in caplog.text


def test_json_nesting_scan_matches_the_parsed_depth():
    """The scan before parsing, against the depth of what json.loads builds."""

    def depth(v) -> int:
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        return 0

    rng = np.random.default_rng(7)
    tricky = ["[", "]", "{", "}", '"', "\\", '\\"', "\\[", "x"]

    def make(level: int):
        if level == 0 or rng.random() < 0.2:
            return "".join(rng.choice(tricky, size=int(rng.integers(0, 6))))
        children = [make(level - 1) for _ in range(int(rng.integers(0, 3)))]
        return children if rng.random() < 0.5 else {f"k{i}": c for i, c in enumerate(children)}

    for _ in range(300):
        doc = make(int(rng.integers(0, 40)))
        body = json.dumps(doc).encode()
        for limit in (0, 3, 32):
            for chunk in (5, 1 << 20):
                want = depth(doc) > limit
                assert json_nesting_over(body, limit, chunk) == want, (body, limit, chunk)
    assert not json_nesting_over(b'{"plot": "' + b"[" * 500 + b'"}', 32)
    assert json_nesting_over(b'{"a": "\\\\", "b": ' + b"[" * 33 + b"]" * 33 + b"}", 32)


def test_binding_beyond_loopback_needs_a_token(tmp_path, index_dir):
    check_bind("127.0.0.1", None, False)
    check_bind("::1", None, False)
    check_bind("0.0.0.0", TOKEN, False)
    check_bind("0.0.0.0", None, True)
    with pytest.raises(ServeError, match="--token-file FILE"):
        check_bind("0.0.0.0", None, False)
    out = CliRunner().invoke(cli, ["serve", str(index_dir), "--host", "0.0.0.0", "--port", "1"])
    assert (
        out.exit_code == 1 and "--insecure-no-token" in out.output and "Traceback" not in out.output
    )
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ServeError, match="at least 16 characters"):
        read_token_file(short)
    with pytest.raises(ServeError, match="not a regular file"):
        read_token_file(tmp_path)
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    assert read_token_file(good) == TOKEN
    out = CliRunner().invoke(cli, ["serve", str(tmp_path / "none"), "--port", "1"])
    assert out.exit_code == 1 and "no index at" in out.output


def test_cors_is_off_unless_an_origin_is_given(client, service, index_dir):
    origin = {"Origin": "http://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/v1/index", headers=origin).headers
    config = ServeConfig(index_dir=index_dir, cors_origins=("http://elsewhere.example",))
    with TestClient(create_app(config, service), base_url=LOCAL) as c:
        r = c.get("/v1/index", headers=origin)
        assert r.headers["access-control-allow-origin"] == "http://elsewhere.example"
        other = c.get("/v1/index", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ----------------------------------------------------------------------------- batching, overload, time


def test_micro_batches_gather_concurrent_inputs_and_refuse_when_full():
    sizes = []
    taken, gate = threading.Event(), threading.Event()

    def fn(xs):
        taken.set()
        gate.wait(5)
        sizes.append(len(xs))
        return [x * 2 for x in xs]

    b = MicroBatcher(fn, "test", max_batch=8, max_wait=0.05, max_queue=16)
    try:
        first = b.submit(0)  # taken by the worker, which then waits on the gate
        assert taken.wait(5)
        futures = [b.submit(i) for i in range(1, 17)]
        with pytest.raises(Overloaded):
            b.submit(99)
        gate.set()
        assert first.result(5) == 0 and [f.result(5) for f in futures] == [
            2 * i for i in range(1, 17)
        ]
        assert sizes == [1, 8, 8]
    finally:
        gate.set()
        b.close()


def test_a_failing_batch_fails_its_requests_only():
    b = MicroBatcher(lambda xs: [1 / x for x in xs], "test", max_wait=0.0)
    try:
        with pytest.raises(ZeroDivisionError):
            b.map([0])
        assert b.map([2, 4]) == [0.5, 0.25]
    finally:
        b.close()


def test_full_queue_is_503_with_retry_after(client, service, monkeypatch):
    enc = service.encoders(service.current.index.get_set("plot"))

    def full(item, work=None):
        raise Overloaded("text", retry_after=2)

    monkeypatch.setattr(enc._texts, "submit", full)
    r = client.post("/v1/predict", data={"plot": "a brand new plot nobody encoded"})
    _problem(r, 503, "busy")
    assert r.headers["retry-after"] == "2"


def test_slow_request_times_out_and_a_crash_shows_no_traceback(service, index_dir, monkeypatch):
    from embedgenre.serve.routers import predict as routes

    config = ServeConfig(index_dir=index_dir, request_timeout_s=0.3)
    with TestClient(
        create_app(config, service), base_url=LOCAL, raise_server_exceptions=False
    ) as c:
        monkeypatch.setattr(routes, "_predict", lambda *a: time.sleep(1.0) or {})
        _problem(c.post("/v1/predict", data={"plot": PLOT}), 504, "longer than 0.3 s")

        def boom(*a):
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(routes, "_predict", boom)
        doc = _problem(c.post("/v1/predict", data={"plot": PLOT}), 500, "internal error")
        assert "secret" not in json.dumps(doc)


def test_concurrent_predicts_are_batched(client, service, fixture_dir, monkeypatch):
    posters = sorted((fixture_dir / "posters").glob("*.jpg"))[:12]
    enc = service.encoders(service.current.index.get_set("poster"))
    # a batch closes once every poster is in it (the time limit is far beyond the test's)
    monkeypatch.setattr(enc._pixels, "max_batch", len(posters))
    monkeypatch.setattr(enc._pixels, "max_wait", 60.0)

    def batches():
        get = service.metrics.registry.get_sample_value
        labels = {"kind": "poster"}
        count = get("embedgenre_batch_size_count", labels) or 0.0
        return count, get("embedgenre_batch_size_sum", labels) or 0.0

    count0, sum0 = batches()
    status = [None] * len(posters)

    def one(i):
        files = {"poster": ("p.jpg", posters[i].read_bytes(), "image/jpeg")}
        status[i] = client.post("/v1/predict", files=files).status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(posters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    count1, sum1 = batches()
    assert status == [200] * len(posters)
    assert sum1 - sum0 == len(posters)  # every poster encoded once
    assert count1 - count0 == 1  # one batch, not one by one


# ----------------------------------------------------------------------------- the web page


def _not_blank(png: Path) -> None:
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    assert pixels.std() > 25, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50  # posters, text, bars


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
@pytest.mark.skipif(browser() is None, reason=NO_BROWSER)
def test_web_page_in_a_real_browser(service, poster, tmp_path):
    from selenium.webdriver.common.by import By

    css = By.CSS_SELECTOR

    def all_images_loaded(d, where: str) -> bool:
        script = (
            f"const im = [...document.querySelectorAll({where!r})];"
            "return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0);"
        )
        return d.execute_script(script)

    with page_in_chromium(service, tmp_path / "profile") as (url, driver, wait):
        driver.get(url + "/")
        wait.until(lambda d: "110 movies" in d.find_element(By.ID, "index-info").text)
        driver.find_element(By.ID, "poster").send_keys(str(poster[0]))
        driver.find_element(By.ID, "plot").send_keys(PLOT)
        driver.find_element(By.ID, "predict-btn").click()
        wait.until(
            lambda d: d.find_elements(css, "#bars li") and d.find_elements(css, "#grid .tile")
        )
        bars = driver.find_elements(css, "#bars li")
        assert len(driver.find_elements(css, "#bars .tick")) == len(bars) == 23
        head = driver.find_element(By.ID, "head-name")
        assert head.text == "by a linear classifier on poster"
        assert head.get_attribute("title") == "head linear-poster"
        labels = [s.text for s in driver.find_elements(css, "#grid .score-label")]
        assert len(labels) == 12 and all(
            re.fullmatch(r"match -?\d+\.\d \(poster \+ plot, standardised\)", s) for s in labels
        ), labels
        assert driver.find_element(By.ID, "results-note").text.startswith("Match: poster and")
        predicted = [
            b.get_attribute("data-genre") for b in driver.find_elements(css, "#bars li.yes")
        ]
        why = driver.find_element(By.ID, "why").text
        assert predicted and all(g in why for g in predicted)
        wait.until(lambda d: all_images_loaded(d, "#grid img"))
        driver.save_screenshot(str(tmp_path / "desktop.png"))
        _not_blank(tmp_path / "desktop.png")

        tile = driver.find_elements(css, "#grid .tile")[0]
        clicked = tile.get_attribute("data-id")
        tile.click()  # a similar movie opens its own page; Back returns to the results
        wait.until(lambda d: d.execute_script("return location.hash") == f"#/movie/{clicked}")
        wait.until(lambda d: len(d.find_elements(css, "#movie-similar .tile")) == 12)
        driver.back()
        wait.until(lambda d: d.find_element(By.ID, "view-home").is_displayed())
        assert driver.find_element(By.ID, "results-title").text == "Similar movies"

        driver.find_element(By.ID, "search").send_keys("a haunted house")
        driver.find_element(By.ID, "search-btn").click()
        wait.until(
            lambda d: d.find_element(By.ID, "results-title").text == "Search: a haunted house"
        )
        assert "text -> plots" in driver.find_element(By.ID, "results-note").text

        bad = tmp_path / "poster.jpg"
        bad.write_text("this is a text file, not a poster\n")
        driver.find_element(By.ID, "poster").send_keys(str(bad))
        driver.find_element(By.ID, "predict-btn").click()
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "not an image" in driver.find_element(By.ID, "error").text

        driver.set_window_size(390, 844)  # a phone
        wait.until(lambda d: d.execute_script("return window.innerWidth") <= 400)
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        ), "the page scrolls sideways at phone width"
        columns = driver.execute_script(
            "return getComputedStyle(document.getElementById('grid'))"
            ".gridTemplateColumns.split(' ').length"
        )
        assert columns == 2
        driver.save_screenshot(str(tmp_path / "phone.png"))
        _not_blank(tmp_path / "phone.png")


def test_the_serving_process_runs_blas_on_one_thread_per_call():
    """Concurrent searches supply the parallelism; threaded BLAS in each would oversubscribe."""
    code = (
        "import numpy, faiss\n"
        "from threadpoolctl import threadpool_info\n"
        "from embedgenre.serve.service import one_blas_thread_per_request\n"
        "before = {i['filepath']: i['num_threads'] for i in threadpool_info() "
        "if i['user_api'] == 'blas'}\n"
        "one_blas_thread_per_request()\n"
        "after = {i['filepath']: i['num_threads'] for i in threadpool_info() "
        "if i['user_api'] == 'blas'}\n"
        "print(len(before), max(before.values()), sorted(set(after.values())))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    libs, threads_before, after = out.stdout.split(maxsplit=2)
    assert int(libs) >= 1 and int(threads_before) == 2
    assert after.strip() == "[1]"
