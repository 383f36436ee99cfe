"""Load on `embedgenre serve` over loopback: latency per route, throughput, errors, memory.

Starts `embedgenre serve INDEX` on 127.0.0.1 (a free port), waits for /readyz (the ready time is
reported), then drives it with an asyncio httpx client:

1. a mixed workload (predict with a poster, predict with a plot, similar by id, search) at 1, 8
   and 32 concurrent clients: p50/p95/p99 per route, requests/s, errors;
2. similar by id alone at 8 clients (target >= 500 requests/s, p99 < 50 ms);
3. predict with a poster alone at 32 clients, against the batched end-to-end posters/s of
   ``encode_speed.py``'s ``time_end_to_end`` measured in this run on the same posters (target
   >= 0.8x, p99 < 500 ms);
4. a hostile phase: 8 clients each sending predicts that carry 8 posters of 40 Mpx as 16-bit
   greyscale PNGs (about 90 kB each, made here), while 8 clients send similar by id. Targets:
   server RSS never more than 600 MB above its ready RSS (sampled every 20 ms), every hostile
   request answered (4xx or 2xx) within 30 s, similar p99 < 250 ms meanwhile, and no request's
   work going on more than 1 s after its answer (the server's
   ``embedgenre_work_after_answer_seconds``).

Phases 2 and 3 run from a minimal keep-alive client on raw sockets: on a 2-core machine that
runs both ends, httpx would spend more of the shared CPU than the server's own work.

The server's RSS is read when ready, after a warm-up of predicts (--warmup), and after the last
request (10,000 requests in all by
default; target growth < 50 MB). Bounded: every phase stops at its request count or its time cap.

    python benchmarks/serve_load.py --index indexes/posters-dev
The index needs a poster head and a plot head (`embedgenre train INDEX --modality poster`, then
`--modality plot`). Timings are noisy on a shared machine: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "posters"
ROUTES = ("predict poster", "predict plot", "similar", "search")
WORDS = "ghost house war love city night space family detective music school ship island".split()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workload:
    """Request makers over the shared posters: (route name, method, path, kwargs)."""

    def __init__(self, data: Path, ids: list[str], seed: int = 0):
        self.rng = random.Random(seed)
        with open(data / "movies.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.posters = [(data / r["poster"]).read_bytes() for r in rows[:400]]
        self.plots = [r["plot"] for r in rows if r.get("plot")][:400]
        self.ids = ids

    def make(self, route: str):
        r = self.rng
        if route == "predict poster":
            files = {"poster": ("p.jpg", r.choice(self.posters), "image/jpeg")}
            return "POST", "/v1/predict", {"files": files}
        if route == "predict plot":
            return "POST", "/v1/predict", {"data": {"plot": r.choice(self.plots)}}
        if route == "similar":
            return "GET", "/v1/similar", {"params": {"id": r.choice(self.ids), "k": 10}}
        query = " ".join(r.sample(WORDS, 3))
        return "GET", "/v1/search", {"params": {"q": query, "k": 10}}


async def drive(url: str, work: Workload, routes, clients: int, requests: int, cap_s: float):
    """``requests`` requests (or until ``cap_s``) from ``clients`` concurrent clients cycling
    through ``routes``; returns ({route: [seconds]}, {route: errors}, wall seconds, done)."""
    import httpx

    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    left = [requests]
    deadline = time.perf_counter() + cap_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: httpx.AsyncClient, i: int):
        n = i
        while left[0] > 0 and time.perf_counter() < deadline:
            left[0] -= 1
            route = routes[n % len(routes)]
            n += 1
            method, path, kw = work.make(route)
            t = time.perf_counter()
            try:
                resp = await c.request(method, path, **kw)
                ok = resp.status_code == 200
            except httpx.HTTPError:
                ok = False
            lat[route].append(time.perf_counter() - t)
            if not ok:
                errors[route] += 1

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, i) for i in range(clients)))
        wall = time.perf_counter() - t0
    return lat, errors, wall, requests - max(0, left[0])


def raw_request(work: Workload, route: str) -> bytes:
    """The bytes of one HTTP/1.1 request for ``route`` (GET query or multipart upload)."""
    return encode_request(*work.make(route))


def encode_request(method: str, path: str, kw: dict) -> bytes:
    """One HTTP/1.1 request: a GET with ``kw["params"]`` or a multipart POST of ``kw["files"]``
    (a dict, or a list of (field, (filename, bytes, type))) and ``kw["data"]``."""
    from urllib.parse import urlencode

    if method == "GET":
        return f"GET {path}?{urlencode(kw['params'])} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    boundary = "embedgenreloadboundary"
    parts = []
    files = kw.get("files") or {}
    for field, (filename, data, ctype) in files.items() if isinstance(files, dict) else files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    for field, value in (kw.get("data") or {}).items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    )
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, lower-cased head) of one HTTP/1.1 answer, its body read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), head


async def drive_raw(
    port: int,
    work: Workload,
    route: str,
    clients: int,
    requests: int,
    cap_s: float,
    until: asyncio.Future | None = None,
):
    """As :func:`drive` for one route, from a minimal HTTP/1.1 keep-alive client on raw asyncio
    streams: it spends far less CPU per request than httpx, so on a 2-core machine that runs
    both ends, the figure is closer to what the server can do for a client elsewhere. Stops
    early once ``until`` is done."""
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    left = [requests]
    deadline = time.perf_counter() + cap_s

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0 and time.perf_counter() < deadline:
                if until is not None and until.done():
                    break
                left[0] -= 1
                request = raw_request(work, route)
                t = time.perf_counter()
                writer.write(request)
                status, _ = await read_answer(reader)
                lat[route].append(time.perf_counter() - t)
                if status != 200:
                    errors[route] += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return lat, errors, wall, requests - max(0, left[0])


def hostile_png(width: int = 6300, height: int = 6330) -> bytes:
    """A 16-bit greyscale PNG of ``width`` x ``height`` (just under 40 Mpx) in about 90 kB."""
    from PIL import Image

    pixels = np.full((height, width), 1000, dtype=np.uint16)
    pixels[:, : width // 2] = 500
    buf = __import__("io").BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


class RssSampler(threading.Thread):
    """The server's RSS every ``every`` seconds until stopped; ``peak`` in MB."""

    def __init__(self, pid: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self.stop.wait(self.every)


async def drive_hostile(port: int, body: bytes, clients: int, per_client: int):
    """``clients`` connections each sending ``per_client`` copies of ``body`` one after the
    other; returns [(status, seconds)] in the order answered (status 0: no answer)."""
    answers: list[tuple[int, float]] = []

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per_client):
                t = time.perf_counter()
                writer.write(body)
                try:
                    status, head = await asyncio.wait_for(read_answer(reader), 120)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    answers.append((0, time.perf_counter() - t))
                    return
                answers.append((status, time.perf_counter() - t))
                if b"connection: close" in head:
                    return
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


async def hostile_phase(port: int, work: Workload, clients: int, per_client: int, cap_s: float):
    """The hostile clients and 8 similar-by-id clients together; the similar clients stop when
    the hostile ones are done. Returns (hostile answers, similar (lat, errors, wall, done))."""
    png = hostile_png()
    files = [("poster", (f"huge{i}.png", png, "image/png")) for i in range(8)]
    body = encode_request("POST", "/v1/predict", {"files": files})
    hostile = asyncio.ensure_future(drive_hostile(port, body, clients, per_client))
    similar = asyncio.ensure_future(drive_raw(port, work, "similar", 8, 10**9, cap_s, hostile))
    answers = await hostile
    return answers, await similar


def late_work(url: str) -> tuple[int, dict[str, float]]:
    """(requests whose work went on after their answer, {bucket upper bound: count}) from the
    server's metrics."""
    import httpx

    text = httpx.get(url + "/metrics").text
    count, buckets = 0, {}
    for line in text.splitlines():
        if line.startswith("embedgenre_work_after_answer_seconds_count"):
            count = int(float(line.split()[-1]))
        elif line.startswith("embedgenre_work_after_answer_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.split()[-1])
    return count, buckets


def batched_posters_per_s(data: Path, n: int) -> float:
    """encode_speed.py's end-to-end rate (decode threads + ONNX Lite0, batch 32), here, now."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from encode_speed import time_end_to_end

    from embedgenre.encoders import create_encoder

    paths = sorted((data / "posters").glob("*.jpg"))[:n]
    enc = create_encoder("cnn:efficientnet-lite0")
    return time_end_to_end(enc, paths, 32, None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--index", type=Path, default=ROOT / "indexes" / "posters-dev")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--clients", default="1,8,32", help="concurrency levels of the mixed phase")
    p.add_argument("--mixed", type=int, default=2000, help="requests per mixed level")
    p.add_argument("--similar", type=int, default=2000, help="requests of the similar phase")
    p.add_argument("--predict", type=int, default=1000, help="requests of the predict phase")
    p.add_argument(
        "--total", type=int, default=10000, help="requests in all (RSS is read around them)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="predicts (posters and plots, 32 clients) before the RSS baseline: ONNX Runtime's "
        "arena grows with each larger batch and new input shape, to a plateau",
    )
    p.add_argument(
        "--hostile",
        type=int,
        default=4,
        help="requests per hostile client (8 clients, 8 x 40 Mpx 16-bit PNGs each); 0: skip",
    )
    p.add_argument(
        "--hostile-only", action="store_true", help="after the warm-up, only the hostile phase"
    )
    p.add_argument("--cap", type=float, default=180.0, help="seconds at most per phase")
    p.add_argument("--encode-n", type=int, default=256, help="posters for the batched rate")
    args = p.parse_args()

    import httpx
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embedgenre.cli.app",
            "-q",
            "serve",
            str(args.index),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,  # a file, not a pipe: a full pipe would block the server
    )
    try:
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise SystemExit(log.read().decode())
            try:
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - t0 > 300:
                raise SystemExit("the server was not ready within 300 s")
            time.sleep(0.1)
        ready_s = time.perf_counter() - t0
        info = httpx.get(url + "/v1/index").json()
        ids = [
            it["id"]
            for page in range(1, 6)
            for it in httpx.get(url + "/v1/items", params={"page": page, "per_page": 100}).json()[
                "items"
            ]
        ]
        work = Workload(args.data, ids)
        # one of each, so every head and encoder has run once, then full batches of each kind
        # (ONNX Runtime's memory arena grows once to the largest batch: that is not a leak)
        for route in ROUTES:
            method, path, kw = work.make(route)
            r = httpx.request(method, url + path, timeout=120, **kw)
            if r.status_code != 200:
                raise SystemExit(f"{route}: {r.status_code} {r.text}")
        rss_start = rss_mb(server.pid)
        asyncio.run(drive(url, work, ROUTES[:2], 32, args.warmup, args.cap))
        rss0 = rss_mb(server.pid)
        console.print(
            f"index {info['name']}: {info['items']} items, generation {info['generation']}; "
            f"ready {ready_s:.1f} s after start; {os.cpu_count()} CPUs; server RSS {rss_start:.0f} MB "
            f"when ready, {rss0:.0f} MB after a warm-up of {args.warmup} predicts at 32 clients"
        )

        rate = (
            float("nan") if args.hostile_only else batched_posters_per_s(args.data, args.encode_n)
        )
        sent = 0
        table = Table(title="serve under load (loopback)")
        for col in (
            "phase",
            "clients",
            "route",
            "requests",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s",
            "RSS MB",
        ):
            table.add_column(col, justify="left" if col in ("phase", "route") else "right")
        results = {}

        def add(phase, clients, lat, errors, wall):
            total = sum(len(v) for v in lat.values())
            for route in ROUTES:
                if route not in lat:
                    continue
                ms = np.asarray(lat[route]) * 1000
                p50, p95, p99 = np.percentile(ms, [50, 95, 99])
                table.add_row(
                    phase,
                    str(clients),
                    route,
                    str(len(ms)),
                    str(errors.get(route, 0)),
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{p99:.1f}",
                    f"{len(ms) / wall:.1f}",
                    "",
                )
                results[(phase, clients, route)] = (len(ms) / wall, p99, errors.get(route, 0))
            table.add_row(
                phase,
                str(clients),
                "all",
                str(total),
                str(sum(errors.values())),
                "",
                "",
                "",
                f"{total / wall:.1f}",
                f"{rss_mb(server.pid):.0f}",  # the server's, after this phase
            )

        phases = [("mixed", int(c), ROUTES, args.mixed) for c in args.clients.split(",")]
        phases += [
            ("similar", 8, ("similar",), args.similar),
            ("predict", 32, ("predict poster",), args.predict),
        ]
        if args.hostile_only:
            phases = []
        for phase, clients, routes, n in phases:
            if phase != "mixed":  # the throughput targets: measured with the light client
                run = drive_raw(port, work, routes[0], clients, n, args.cap)
            else:
                run = drive(url, work, routes, clients, n, args.cap)
            lat, errors, wall, done = asyncio.run(run)
            sent += done
            add(phase, clients, lat, errors, wall)
        if (
            sent < args.total and not args.hostile_only
        ):  # the rest of the 10,000, mixed at 8 clients, for the RSS figure
            lat, errors, wall, done = asyncio.run(
                drive(url, work, ROUTES, 8, args.total - sent, args.cap * 2)
            )
            sent += done
            add("mixed (rest)", 8, lat, errors, wall)
        rss1 = rss_mb(server.pid)

        hostile_checks = []
        if args.hostile > 0:
            late_before, buckets_before = late_work(url)
            sampler = RssSampler(server.pid)
            sampler.start()
            t = time.perf_counter()
            answers, (lat, errors, wall, done) = asyncio.run(
                hostile_phase(port, work, 8, args.hostile, args.cap)
            )
            hostile_wall = time.perf_counter() - t
            sampler.stop.set()
            sampler.join()
            late_after, buckets = late_work(url)
            add("hostile (beside)", 8, lat, errors, wall)
            statuses = defaultdict(int)
            for status, _ in answers:
                statuses[status] += 1
            slowest = max(sec for _, sec in answers)
            console.print(
                f"hostile phase: {len(answers)} requests of 8 x 40 Mpx 16-bit PNGs "
                f"({len(hostile_png()) / 1000:.0f} kB each) from 8 clients in "
                f"{hostile_wall:.1f} s; answers {dict(statuses)}; every answer (status, ms): "
                + " ".join(f"{st}:{sec * 1000:.0f}" for st, sec in answers)
            )
            late = late_after - late_before
            within_1s = buckets.get("1.0", 0) - buckets_before.get("1.0", 0)
            over_1s = late - within_1s
            console.print(
                f"server RSS: ready {rss_start:.0f} MB, before the hostile phase {rss1:.0f} MB, "
                f"peak during it {sampler.peak:.0f} MB ({sampler.peak - rss_start:+.0f} vs "
                f"ready); requests whose work went on after their answer: {late}, "
                f"{over_1s:g} of them over 1 s"
            )
            sim_h = results.get(("hostile (beside)", 8, "similar"), (0, 0, 0))
            ok_status = all(200 <= st < 500 for st, _ in answers)
            hostile_checks = [
                (
                    "hostile: server RSS <= ready + 600 MB",
                    f"peak {sampler.peak:.0f} MB = ready {rss_start:.0f} "
                    f"{sampler.peak - rss_start:+.0f}",
                    sampler.peak - rss_start <= 600,
                ),
                (
                    "hostile: every request answered 4xx/2xx within 30 s",
                    f"{dict(statuses)}, slowest {slowest:.2f} s",
                    ok_status and slowest <= 30,
                ),
                (
                    "hostile: similar p99 < 250 ms meanwhile",
                    f"p99 {sim_h[1]:.1f} ms, {sim_h[0]:.0f} req/s",
                    sim_h[1] < 250,
                ),
                (
                    "hostile: no work > 1 s after its answer",
                    f"{late} request(s) worked after their answer, {over_1s:g} over 1 s",
                    over_1s == 0,
                ),
            ]
        console.print(table)

        sim = results.get(("similar", 8, "similar"), (0, 0, 0))
        pred = results.get(("predict", 32, "predict poster"), (0, 0, 0))
        errors_all = sum(v[2] for v in results.values())
        console.print(
            f"batched end-to-end posters/s (encode_speed time_end_to_end, lite0 onnx, batch 32): {rate:.1f}"
        )
        normal_checks = [
            ("zero errors", f"{errors_all} errors", errors_all == 0),
            (
                "similar at 8 clients >= 500 req/s, p99 < 50 ms",
                f"{sim[0]:.0f} req/s, p99 {sim[1]:.1f} ms",
                sim[0] >= 500 and sim[1] < 50,
            ),
            (
                "predict poster at 32 >= 0.8x batched, p99 < 500 ms",
                f"{pred[0]:.1f}/s = {pred[0] / rate:.2f}x, p99 {pred[1]:.0f} ms",
                pred[0] >= 0.8 * rate and pred[1] < 500,
            ),
            (
                f"RSS growth over {sent} requests < 50 MB",
                f"{rss0:.0f} -> {rss1:.0f} MB ({rss1 - rss0:+.0f})",
                rss1 - rss0 < 50,
            ),
            ("ready < 5 s after start", f"{ready_s:.1f} s", ready_s < 5),
        ]
        checks = [*([] if args.hostile_only else normal_checks), *hostile_checks]
        t2 = Table(title="targets")
        for col in ("target", "measured", "met"):
            t2.add_column(col)
        for name, value, ok in checks:
            t2.add_row(name, value, "yes" if ok else "NO")
        console.print(t2)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
