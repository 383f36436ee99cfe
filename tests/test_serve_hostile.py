"""Uploads built to cost the service memory or time: what decoding a poster may hold, the pixels
of one request, the bytes being decoded at once, and work that stops when its request is over
(timed out, or its client gone)."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time

import numpy as np
import pytest
from _serving import ServerThread, index_with_heads, running_service
from fastapi.testclient import TestClient
from PIL import Image

from embedgenre.errors import PosterError
from embedgenre.images import OpenedImage, open_image_bytes, to_rgb
from embedgenre.serve import ServeConfig, create_app, guard
from embedgenre.serve.batching import MicroBatcher
from embedgenre.serve.limits import Cancelled, DecodeBudget, RequestWork, current_work

DRAFT = (256, 256)  # a size an encoder may ask for
LOCAL = "http://localhost"  # a Host the server trusts


@pytest.fixture(scope="module")
def index_dir(fixture_index_dir, tmp_path_factory):
    return index_with_heads(fixture_index_dir, tmp_path_factory.mktemp("hostile") / "index")


@pytest.fixture(scope="module")
def service(index_dir):
    with running_service(index_dir) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service.config, service), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def png16(tmp_path_factory) -> bytes:
    """A 16-bit greyscale PNG of 6300 x 6330 pixels (under the 40 Mpx cap) in about 90 kB."""
    path = tmp_path_factory.mktemp("png16") / "huge16.png"
    pixels = np.full((6330, 6300), 1000, dtype=np.uint16)
    pixels[:, :3150] = 500
    Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    assert len(data) < 1_000_000
    return data


def _png(width: int, height: int, colour=(200, 30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def _problem(r, status: int, match: str) -> dict:
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) == {"error", "fix"} and "Traceback" not in r.text
    assert match.lower() in doc["error"].lower(), doc
    return doc


class DecodeGate:
    """OpenedImage.decode patched to count calls and hold the first one until ``gate`` opens,
    recording the request work it ran for."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self.started, self.gate = threading.Event(), threading.Event()
        self.work: RequestWork | None = None
        original = OpenedImage.decode

        def decode(opened):
            self.calls += 1
            if self.calls == 1:
                self.work = current_work()
                self.started.set()
                assert self.gate.wait(60)
            return original(opened)

        monkeypatch.setattr(OpenedImage, "decode", decode)


# ----------------------------------------------------------------------------- decoding


def test_a_huge_16_bit_png_is_shrunk_while_decoding_without_a_wide_copy(png16):
    opened = open_image_bytes(png16, "huge16.png", max_pixels=40_000_000, draft_size=DRAFT)
    assert opened.size == (6300, 6330) and opened.image.mode == "I;16"
    # the 16-bit pixels themselves (2 bytes each) and small copies: never 8 bytes a pixel
    assert opened.decode_bytes < 6300 * 6330 * 2 + 4 * 2**20
    img = opened.decode()
    assert img.mode == "RGB"
    # shrunk by a whole factor to no less than twice what the encoder needs
    assert 2 * 256 <= min(img.size) < 4 * 256
    left, right = img.getpixel((10, 10)), img.getpixel((img.width - 10, 10))
    assert right == (255, 255, 255) and left == (127, 127, 127)


def test_a_costly_format_is_refused_before_decoding(png16):
    with pytest.raises(PosterError, match=r"takes 79 MB to decode, over the 64 MB limit"):
        open_image_bytes(png16, "huge16.png", 40_000_000, DRAFT, max_decode_bytes=64 * 2**20)
    # a JPEG of the same size is cheap: it is decoded at 1/8 scale
    buf = io.BytesIO()
    Image.new("RGB", (6300, 6330), (10, 20, 30)).save(buf, format="JPEG", quality=50)
    opened = open_image_bytes(buf.getvalue(), "big.jpg", 40_000_000, DRAFT, 64 * 2**20)
    assert opened.size == (788, 792) and opened.decode_bytes < 16 * 2**20


def test_ordinary_posters_decode_as_before():
    """A poster under twice the encoder's size is not shrunk; 16-bit scaling is unchanged."""
    data = _png(300, 450)
    assert open_image_bytes(data, draft_size=DRAFT).decode().size == (300, 450)
    wide = np.arange(0, 60000, 7, dtype=np.uint16)[: 90 * 40].reshape(90, 40)
    expected = (wide.astype(np.float64) * (255.0 / wide.max())).astype(np.uint8)
    got = np.asarray(to_rgb(Image.fromarray(wide)))[:, :, 0]
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- the service


def test_the_service_refuses_a_huge_16_bit_png_unread(client, png16, monkeypatch):
    gate = DecodeGate(monkeypatch)
    gate.gate.set()
    r = client.post("/v1/predict", files={"poster": ("huge16.png", png16, "image/png")})
    doc = _problem(r, 413, "MB to decode, over the 64 MB limit per image")
    assert "8-bit JPEG" in doc["fix"]
    r = client.post("/v1/similar", files={"poster": ("huge16.png", png16, "image/png")})
    _problem(r, 413, "over the 64 MB limit")
    assert gate.calls == 0


def test_a_request_has_a_pixel_budget_across_its_posters(client, service, monkeypatch):
    gate = DecodeGate(monkeypatch)
    gate.gate.set()
    monkeypatch.setattr(service.config, "max_request_pixels", 1_000_000)
    posters = [("poster", (f"p{i}.png", _png(800, 800), "image/png")) for i in range(3)]
    r = client.post("/v1/predict", files=posters)
    doc = _problem(r, 413, "3 poster(s) of this request hold 1,920,000 pixels")
    assert "1,000,000 pixels a request may hold" in doc["error"]
    assert "fewer or smaller posters" in doc["fix"]
    assert gate.calls == 0  # refused from the headers
    r = client.post("/v1/predict", files=posters[:1])
    assert r.status_code == 200, r.text
    assert gate.calls == 1


def test_decoding_waits_for_room_in_the_memory_budget():
    budget = DecodeBudget(100)
    first_in, release_first = threading.Event(), threading.Event()
    second_in = threading.Event()

    def first():
        with budget.hold(60):
            first_in.set()
            release_first.wait(30)

    def second():
        with budget.hold(60):
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_in.wait(30)
    b = threading.Thread(target=second)
    b.start()
    deadline = time.monotonic() + 30
    while budget.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert budget.waiting == 1 and not second_in.is_set() and budget.in_use == 60
    release_first.set()
    a.join(30)
    b.join(30)
    assert second_in.is_set() and budget.peak == 60 and budget.in_use == 0

    # a request cancelled while it waits gives up its place
    work = RequestWork()
    with budget.hold(90):
        failed: list[BaseException] = []

        def third():
            try:
                budget.acquire(50, work)
            except Cancelled as e:
                failed.append(e)

        c = threading.Thread(target=third)
        c.start()
        while budget.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        work.cancel("timed out")
        c.join(30)
    assert failed and "timed out" in str(failed[0]) and budget.in_use == 0


def test_inputs_of_a_cancelled_request_are_dropped_from_the_batch():
    gate, seen = threading.Event(), []

    def fn(xs):
        gate.wait(30)
        seen.extend(xs)
        return xs

    b = MicroBatcher(fn, "test", max_batch=8, max_wait=0.0, max_queue=16)
    try:
        first = b.submit(0)  # taken by the worker, which then waits on the gate
        work, other = RequestWork(), RequestWork()
        mine = [b.submit(i, work) for i in (1, 2)]
        theirs = b.submit(3, other)
        work.cancel("the client went away")
        gate.set()
        assert first.result(30) == 0 and theirs.result(30) == 3
        for f in mine:
            with pytest.raises(Cancelled, match="client went away"):
                f.result(30)
        assert 1 not in seen and 2 not in seen and b.dropped == 2
    finally:
        b.close()


def _late_count(service) -> float:
    name = "embedgenre_work_after_answer_seconds_count"
    return service.metrics.registry.get_sample_value(name) or 0.0


def _work_ended(gate: DecodeGate) -> RequestWork:
    work = gate.work
    assert work is not None
    assert work.wait_idle(60), "the request's work did not end"
    return work


def test_a_timed_out_request_stops_decoding_and_encoding(service, monkeypatch):
    gate = DecodeGate(monkeypatch)
    encoder = service.encoders(service.current.index.get_set("poster"))
    encoded_before = encoder._pixels.encoded
    late_before = _late_count(service)
    config = ServeConfig(index_dir=service.config.index_dir, request_timeout_s=0.5)

    class Clock:
        """asyncio, with the time limit running out once the first decode is under way (the
        limit itself is the real one, on a slow machine too)."""

        def __getattr__(self, name):
            return getattr(asyncio, name)

        @staticmethod
        async def wait_for(aw, timeout):
            task = asyncio.ensure_future(aw)
            await asyncio.to_thread(gate.started.wait, 60)
            return await asyncio.wait_for(task, min(timeout, 0.05))

    monkeypatch.setattr(guard, "asyncio", Clock())
    posters = [("poster", (f"p{i}.png", _png(400, 600), "image/png")) for i in range(3)]
    with TestClient(create_app(config, service), base_url=LOCAL) as c:
        r = c.post("/v1/predict", files=posters)  # the first decode holds until the answer
        _problem(r, 504, "longer than 0.5 s")
        assert gate.started.is_set() and not gate.gate.is_set()
        gate.gate.set()
        work = _work_ended(gate)
    assert work.cancelled and work.reason == "timed out"
    assert gate.calls == 1  # the other two posters were never decoded
    assert encoder._pixels.encoded == encoded_before  # nothing was encoded
    assert service.decode_budget.in_use == 0
    assert _late_count(service) == late_before + 1  # the time it went on was measured


def test_a_client_that_goes_away_stops_its_work(service, monkeypatch):
    gate = DecodeGate(monkeypatch)
    encoder = service.encoders(service.current.index.get_set("poster"))
    encoded_before = encoder._pixels.encoded
    boundary = "hostileboundary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="poster"; filename="p{i}.png"'
        "\r\nContent-Type: image/png\r\n\r\n".encode()
        + _png(400, 600)
        + b"\r\n"
        for i in range(3)
    )
    body = parts + f"--{boundary}--\r\n".encode()
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with ServerThread(create_app(service.config, service), service.config) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(head + body)
            assert gate.started.wait(60)
        # the socket is closed while the first poster is being decoded
        assert gate.work is not None and gate.work.wait_cancelled(60)
        gate.gate.set()
        work = _work_ended(gate)
    assert work.reason == "the client went away"
    assert gate.calls == 1
    assert encoder._pixels.encoded == encoded_before
    assert service.decode_budget.in_use == 0
