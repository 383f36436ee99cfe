"""A real `embedgenre serve` process on 127.0.0.1 keeps answering, without one failed request,
while `embedgenre index` commits a new generation of its index, and then serves the new items."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _catalogs import FIELDS, make_catalog
from _serving import free_port

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[1]


def _catalog_with_new_movies(fixture_dir: Path, root: Path, n_new: int = 3) -> list[str]:
    """The fixture catalog plus ``n_new`` movies of the shared posters (posters linked, not
    copied); returns the new ids."""
    with open(fixture_dir / "movies.csv", newline="", encoding="utf-8") as f:
        rows = [(fixture_dir, r) for r in csv.DictReader(f)]
    have = {r["imdb_id"] for _, r in rows}
    posters = fixture_dir.parent / "posters"
    with open(posters / "movies.csv", newline="", encoding="utf-8") as f:
        new = [r for r in csv.DictReader(f) if r["imdb_id"] not in have and r["plot"]][:n_new]
    (root / "posters").mkdir(parents=True)
    for src, r in rows + [(posters, r) for r in new]:
        (root / r["poster"]).symlink_to(src / r["poster"])
    make_catalog(root, [{k: r[k] for k in FIELDS} for _, r in rows] + new)
    return [r["imdb_id"] for r in new]


def _wait_ready(url: str, proc: subprocess.Popen, seconds: float = 300) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_new_generation_is_served_without_a_failed_request(
    fixture_dir, fixture_index_dir, tmp_path
):
    index = tmp_path / "index"
    shutil.copytree(fixture_index_dir, index)
    new_ids = _catalog_with_new_movies(fixture_dir, tmp_path / "catalog")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = [sys.executable, "-m", "embedgenre.cli.app"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "server.log"  # a file: a pipe nobody reads would fill and block it
    log_file = open(log_path, "wb")
    server = subprocess.Popen(
        [*exe, "serve", str(index), "--port", str(port), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        env=env,
        cwd=ROOT,
    )
    try:
        _wait_ready(url, server)
        first = httpx.get(url + "/v1/items", params={"per_page": 1}, timeout=60).json()["items"][0][
            "id"
        ]
        gen0 = httpx.get(url + "/readyz", timeout=60).json()["generation"]
        failures, answered, generations = [], [0], set()
        stop = threading.Event()

        def load():
            with httpx.Client(base_url=url, timeout=60) as c:
                while not stop.is_set():
                    for path, params in (
                        ("/v1/similar", {"id": first, "k": 5, "by": "both"}),
                        ("/v1/search", {"q": "a ghost in an old house", "k": 3}),
                        ("/v1/items", {"per_page": 2}),
                    ):
                        try:
                            r = c.get(path, params=params)
                        except httpx.HTTPError as e:
                            failures.append(f"{path}: {e!r}")
                            continue
                        if r.status_code != 200:
                            failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                        else:
                            generations.add(int(r.headers["x-index-generation"]))
                            answered[0] += 1

        client = threading.Thread(target=load)
        client.start()
        try:
            indexed = subprocess.run(
                [*exe, "--quiet", "index", str(tmp_path / "catalog"), "--out", str(index)],
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
                cwd=ROOT,
            )
            assert indexed.returncode == 0, indexed.stderr
            deadline = time.monotonic() + 120
            while httpx.get(url + "/readyz", timeout=60).json()["generation"] == gen0:
                assert time.monotonic() < deadline, "the server did not switch generations"
                time.sleep(0.2)
            time.sleep(1.0)  # the client keeps going on the new generation
        finally:
            stop.set()
            client.join(60)
        assert failures == []
        assert answered[0] > 20 and len(generations) >= 2 and max(generations) > gen0
        total = httpx.get(url + "/v1/items", timeout=60).json()["total"]
        assert total == 110 + len(new_ids)
        for item_id in new_ids:
            assert httpx.get(f"{url}/v1/items/{item_id}", timeout=60).status_code == 200
            doc = httpx.get(url + "/v1/similar", params={"id": item_id, "k": 3}, timeout=60).json()
            assert len(doc["neighbours"]) == 3
        metrics = httpx.get(url + "/metrics", timeout=60).text
        assert "embedgenre_index_reloads_total" in metrics
        assert f"embedgenre_index_generation {float(max(generations))}" in metrics
    finally:
        server.send_signal(signal.SIGINT)  # a graceful stop, as Ctrl-C; a server that hangs fails
        assert server.wait(30) in (0, 130)
        log_file.close()
    log = log_path.read_text()
    assert "Traceback" not in log
    assert '"request_id"' in log and "switched from index generation" in log
