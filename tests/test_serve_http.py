"""The HTTP layer of `embedgenre serve` on a real socket: a refused request's body is never read,
and a request's head is bounded in size and in time. The server runs as the command runs it
(uvicorn with its head limits) on 127.0.0.1; the index never loads (every answer here is given
before a route runs). Clients wait on their sockets with bounded timeouts."""

from __future__ import annotations

import json
import select
import socket

import httpx
import pytest
from _serving import ServerThread

from embedgenre.serve import ServeConfig, create_app

pytestmark = pytest.mark.network

TOKEN = "s3cret-token-for-tests-0123456789"
HEAD_CAP = 64 * 1024
HEAD_TIMEOUT = 1.0
WAIT = 10.0  # the longest any client here waits for the server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = ServeConfig(
        index_dir=tmp_path_factory.mktemp("http") / "no-index",
        token=TOKEN,
        max_header_bytes=HEAD_CAP,
        header_timeout_s=HEAD_TIMEOUT,
    )
    with ServerThread(create_app(config), config) as s:
        yield s


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)


def _read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too);
    socket.timeout if it keeps the connection open past WAIT."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _split(response: bytes) -> tuple[str, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.decode("latin-1").lower(), json.loads(body)


@pytest.mark.parametrize(
    "auth, length, status",
    [("Bearer wrong", 10**9, 401), (None, 10**9, 401), (f"Bearer {TOKEN}", 10**9, 413)],
)
def test_a_refused_request_is_answered_and_closed_before_its_body(server, auth, length, status):
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n"
        + (f"Authorization: {auth}\r\n" if auth else "")
        + "\r\n"
    )
    with _connect(server) as s:
        s.sendall(head.encode())  # and not one byte of the body
        response = _read_until_closed(s)
    head, doc = _split(response)
    assert head.startswith(f"http/1.1 {status} ")  # no "100 Continue" first
    assert "connection: close" in head
    assert ("token" if status == 401 else "limit") in doc["error"]


def test_a_head_over_the_cap_gets_431(server):
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    with _connect(server) as s:
        s.sendall(start + b"a" * (HEAD_CAP + 1 - len(start)))  # one byte over, never ended
        head, doc = _split(_read_until_closed(s))
    assert head.startswith("http/1.1 431 ") and "connection: close" in head
    assert "64 kB limit" in doc["error"] and doc["fix"]


def test_a_huge_head_is_cut_off_while_healthz_answers(server):
    total, chunk = 4 * 2**20, 16 * 1024
    with _connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * chunk)
        assert httpx.get(server.url + "/healthz", timeout=WAIT).status_code == 200
        sent = chunk
        try:
            while sent < total:
                if select.select([s], [], [], 0)[0]:
                    break  # the server answered or closed
                s.sendall(b"a" * chunk)
                sent += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = _read_until_closed(s)
    assert sent < total, "the server read a 4 MB header"
    assert response == b"" or response.startswith(b"HTTP/1.1 431 ")
    assert httpx.get(server.url + "/healthz", timeout=WAIT).status_code == 200


def test_a_slow_head_times_out(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    sent = 0
    with _connect(server) as s:
        while sent < len(head):  # one byte every 0.2 s: 20 s in all
            s.sendall(head[sent : sent + 1])
            sent += 1
            if select.select([s], [], [], 0.2)[0]:
                break
        response = _read_until_closed(s)
    assert sent < len(head), "the whole slow head was read"
    head_, doc = _split(response)
    assert head_.startswith("http/1.1 408 ") and "did not arrive within 1 s" in doc["error"]


def test_a_silent_connection_is_closed(server):
    with _connect(server) as s:
        assert _read_until_closed(s) == b""


def test_a_request_after_a_refusal_still_works(server):
    """Keep-alive is kept where the body was read: two requests on one connection."""
    with httpx.Client(base_url=server.url, timeout=WAIT) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/index", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/healthz").status_code == 200
