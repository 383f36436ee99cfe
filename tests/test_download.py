"""Poster download against a local HTTP server on 127.0.0.1 (started here; no other network)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from embedgenre.catalog import CatalogWarning, read_catalog
from embedgenre.download import REPORT_NAME, download_posters, read_poster_sources
from embedgenre.errors import CatalogError, PosterError

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[1]


def image_bytes(color: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 30), color).save(buf, format=fmt)
    return buf.getvalue()


JPEG = image_bytes((200, 30, 30))
PNG = image_bytes((30, 200, 30), "PNG")


class Handler(BaseHTTPRequestHandler):
    """Routes: /good/<n>, /png, /missing (404), /flaky (500 then 200), /down (always 500),
    /html (200 text/html), /garbage (200 image/jpeg, not an image), /slow (answers after 2 s),
    /hang (half the body, then waits until the test releases it)."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        path = self.path
        with srv.lock:
            srv.hits[path] += 1
            n = srv.hits[path]
        try:
            if path.startswith("/good/"):
                self.send(200, "image/jpeg", JPEG)
            elif path == "/png":
                self.send(200, "image/png", PNG)
            elif path == "/missing":
                self.send(404, "text/html", b"<h1>not found</h1>")
            elif path == "/flaky":
                if n == 1:
                    self.send(500, "text/plain", b"try again")
                else:
                    self.send(200, "image/jpeg; charset=binary", JPEG)
            elif path == "/down":
                self.send(503, "text/plain", b"unavailable")
            elif path == "/html":
                self.send(200, "text/html", b"<html><body>Please log in</body></html>")
            elif path == "/garbage":
                self.send(200, "image/jpeg", b"\xff\xd8\xff" + b"not really a jpeg" * 20)
            elif path == "/slow":
                srv.stop.wait(2.0)
                self.send(200, "image/jpeg", JPEG)
            elif path == "/hang":
                if srv.release.is_set():
                    self.send(200, "image/jpeg", JPEG)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                self.wfile.write(JPEG[: len(JPEG) // 2])
                self.wfile.flush()
                srv.half_sent.set()
                srv.release.wait(10.0)
            else:
                self.send(404, "text/plain", b"no route")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.hits = Counter()
    srv.lock = threading.Lock()
    srv.stop = threading.Event()
    srv.half_sent = threading.Event()
    srv.release = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.stop.set()
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def kaggle_csv(path: Path, rows: list[tuple[str, str, str, str]], encoding: str = "utf-8") -> Path:
    lines = ["imdbId,Imdb Link,Title,IMDB Score,Genre,Poster"]
    for imdb_id, title, genre, url in rows:
        lines.append(f'{imdb_id},http://www.imdb.com/title/tt{imdb_id},"{title}",7.1,{genre},{url}')
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


GOOD = [
    ("114709", "Toy Story (1995)", "Animation|Adventure|Comedy", "/good/1"),
    ("113497", "Jumanji (1995)", "Action|Adventure|Family", "/good/2"),
    ("113228", "Grumpier Old Men (1995)", "Comedy|Romance", "/png"),
    ("114885", "Waiting to Exhale (1995)", "comedy|drama|romance", "/flaky"),
]
BAD = [
    ("1000001", "Gone (2001)", "Drama", "/missing"),
    ("1000002", "Down (2002)", "Drama", "/down"),
    ("1000003", "Login Page (2003)", "Drama", "/html"),
    ("1000004", "Garbage (2004)", "Drama", "/garbage"),
    ("1000005", "Slow (2005)", "Drama", "/slow"),
]


def with_base(srv, rows):
    return [(i, t, g, srv.base + u) for i, t, g, u in rows]


def test_download_all_cases_then_resume(server, tmp_path):
    rows = with_base(server, GOOD + BAD) + [
        ("1000006", "No Url (2006)", "Drama", ""),
        ("1000007", "Local File (2007)", "Drama", "file:///etc/passwd"),
        ("114709", "Toy Story again (1995)", "Comedy", server.base + "/good/1"),  # duplicate id
    ]
    csv_path = kaggle_csv(tmp_path / "MovieGenre.csv", rows)
    out = tmp_path / "out"
    rep = download_posters(csv_path, out, workers=4, retries=2, timeout=0.4, backoff=0.01)

    assert rep.downloaded == ["tt0114709", "tt0113497", "tt0113228", "tt0114885"]
    assert rep.present == []
    reasons = {f.id: (f.reason, f.attempts) for f in rep.failed}
    assert reasons == {
        "tt1000001": ("http_404", 1),  # no retry on 404
        "tt1000002": ("http_503", 3),  # 1 + 2 retries
        "tt1000003": ("not_image", 1),
        "tt1000004": ("undecodable", 1),
        "tt1000005": ("timeout", 3),
        "tt1000006": ("no_url", 1),
        "tt1000007": ("bad_url", 1),
    }
    assert server.hits["/flaky"] == 2  # 500, then retried to 200
    assert server.hits["/missing"] == 1 and server.hits["/down"] == 3
    assert server.hits["/good/1"] == 1  # the duplicate row was not fetched
    assert any("duplicate id tt0114709" in p for p in rep.problems)
    assert rep.failed_by_reason()["timeout"] == 1

    posters = sorted(p.name for p in (out / "posters").iterdir())
    assert posters == ["tt0113228.png", "tt0113497.jpg", "tt0114709.jpg", "tt0114885.jpg"]
    with Image.open(out / "posters" / "tt0114709.jpg") as im:
        assert im.format == "JPEG" and im.size == (20, 30)

    report = json.loads((out / REPORT_NAME).read_text())
    assert report["downloaded"] == 4 and report["already_present"] == 0 and report["failed"] == 7
    assert report["failed_by_reason"]["http_404"] == 1
    assert {f["id"] for f in report["failures"]} == set(reasons)

    # the written catalog is the movies.csv layout: index-ready, failed rows left out
    cat = read_catalog(out)
    assert cat.layout == "csv"
    assert cat.ids == rep.downloaded
    toy = cat.items[0]
    assert (toy.title, toy.year, toy.genres) == (
        "Toy Story",
        1995,
        ("Animation", "Adventure", "Comedy"),
    )
    assert cat.items[3].genres == ("Comedy", "Drama", "Romance")
    assert all(it.poster.is_file() for it in cat.items)

    # second run: nothing new is downloaded, good URLs are not fetched again
    hits_before = dict(server.hits)
    rep2 = download_posters(csv_path, out, workers=4, retries=0, timeout=0.4, backoff=0.01)
    assert rep2.downloaded == []
    assert sorted(rep2.present) == sorted(rep.downloaded)
    assert len(rep2.failed) == 7
    for url in ("/good/1", "/good/2", "/png", "/flaky"):
        assert server.hits[url] == hits_before[url]
    assert read_catalog(out).ids == cat.ids


def test_resume_replaces_broken_file_and_cleans_stale_part(server, tmp_path):
    csv_path = kaggle_csv(tmp_path / "m.csv", with_base(server, GOOD[:2]))
    posters = tmp_path / "out" / "posters"
    posters.mkdir(parents=True)
    (posters / "tt0114709.jpg").write_bytes(JPEG[:40])  # truncated: must be fetched again
    (posters / ".tt0113497.jpg.999.part").write_bytes(b"half")
    rep = download_posters(csv_path, tmp_path / "out", workers=2, retries=0, timeout=2)
    assert sorted(rep.downloaded) == ["tt0113497", "tt0114709"]
    assert sorted(p.name for p in posters.iterdir()) == ["tt0113497.jpg", "tt0114709.jpg"]
    assert (posters / "tt0114709.jpg").read_bytes() == JPEG


def test_killed_mid_file_leaves_no_partial_poster(server, tmp_path):
    csv_path = kaggle_csv(
        tmp_path / "m.csv", [("114709", "Toy Story (1995)", "Comedy", server.base + "/hang")]
    )
    out = tmp_path / "out"
    code = (
        "import sys; from embedgenre.download import download_posters; "
        "download_posters(sys.argv[1], sys.argv[2], workers=1, retries=0, timeout=30)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(csv_path), str(out)], env=env, cwd=ROOT
    )
    try:
        assert server.half_sent.wait(30), "the download never started"
        time.sleep(0.2)  # the client is now blocked half-way through the body
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [p.name for p in (out / "posters").iterdir()] if (out / "posters").exists() else []
    assert left == []  # neither a half poster nor a temp file
    assert not (out / "movies.csv").exists()

    server.release.set()  # the server now answers in full; the next run completes
    rep = download_posters(csv_path, out, workers=1, retries=0, timeout=5)
    assert rep.downloaded == ["tt0114709"]
    assert (out / "posters" / "tt0114709.jpg").read_bytes() == JPEG


def test_non_utf8_csv_and_sources(server, tmp_path):
    rows = [("114709", "Señor Toy (1995)", "Comedy", server.base + "/good/1")]
    csv_path = kaggle_csv(tmp_path / "MovieGenre.csv", rows, encoding="latin-1")
    with pytest.warns(CatalogWarning, match="not valid UTF-8"):
        sources, problems = read_poster_sources(csv_path)
    assert sources[0].title == "Señor Toy" and sources[0].year == 1995
    assert problems == ["MovieGenre.csv: not UTF-8; decoded as cp1252"]
    with pytest.warns(CatalogWarning):
        rep = download_posters(csv_path, tmp_path / "out", workers=1, retries=0, timeout=2)
    assert rep.downloaded == ["tt0114709"]
    assert read_catalog(tmp_path / "out").items[0].title == "Señor Toy"


def test_bad_inputs(tmp_path):
    no_url = tmp_path / "a.csv"
    no_url.write_text("imdbId,Title,Genre\n1,A,Drama\n")
    with pytest.raises(
        CatalogError, match=r"no poster URL column.*columns found: imdbId, Title, Genre"
    ):
        read_poster_sources(no_url)
    with pytest.raises(PosterError, match="need workers >= 1"):
        download_posters(no_url, tmp_path / "o", workers=0)
    same = tmp_path / "movies.csv"
    same.write_text("imdb_id,genres,poster\ntt1,Drama,http://127.0.0.1:9/x.jpg\n")
    with pytest.raises(PosterError, match="would overwrite the source"):
        download_posters(same, tmp_path)


def test_cli_download_json_and_table(server, tmp_path):
    from embedgenre.cli.app import app

    rows = with_base(server, GOOD[:2] + BAD[:1])
    csv_path = kaggle_csv(
        tmp_path / "m.csv", [(*rows[0][:1], "Año (1999)", *rows[0][2:]), *rows[1:]], "latin-1"
    )
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["posters", "download", str(csv_path), "--out", str(out), "--workers", "2"]
    res = runner.invoke(app, [*args, "--retries", "0", "--timeout", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["downloaded"] == 2 and summary["failed_by_reason"] == {"http_404": 1}
    assert Path(summary["catalog"]).is_file()

    res = runner.invoke(app, [*args, "--retries", "0"])
    assert res.exit_code == 0, res.output
    assert "already present" in res.stdout and "failed: http_404" in res.stdout
    assert "warning: " in res.stderr and "not valid UTF-8" in res.stderr
    res = runner.invoke(app, [*args, "--encoding", "latin-1", "--json"])
    assert res.exit_code == 0 and "warning" not in res.stderr
    assert json.loads(res.stdout)["already_present"] == 2

    bad = kaggle_csv(tmp_path / "bad.csv", with_base(server, BAD[:1]))
    res = runner.invoke(app, ["posters", "download", str(bad), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 1
    assert "error: no poster could be downloaded" in res.stderr


def test_poster_sources_are_the_rows_the_kaggle_layout_reads(tmp_path):
    """Download and catalog read a CSV's rows through one reader: same ids, same problems."""
    csv_path = tmp_path / "MovieGenre.csv"
    csv_path.write_text(
        "imdbId,Title,Genre,Poster\n"
        "114709,Toy Story (1995),Animation|Comedy,http://127.0.0.1:9/a.jpg\n"
        "tt0113497,Jumanji (1995),Adventure,http://127.0.0.1:9/b.jpg,extra\n"
        "0114709,Toy Story again (1995),Comedy,http://127.0.0.1:9/c.jpg\n"
        "113228,Grumpier (19x5),Comedy,http://127.0.0.1:9/d.jpg\n",
        encoding="utf-8",
    )
    sources, problems = read_poster_sources(csv_path)
    catalog = read_catalog(csv_path)
    assert [s.id for s in sources] == catalog.ids == ["tt0114709", "tt0113497", "tt0113228"]
    assert [(s.title, s.year) for s in sources] == [(it.title, it.year) for it in catalog.items]
    assert any("line 3: more fields than the header has" in p for p in problems)
    assert any("line 4: duplicate id tt0114709" in p for p in problems)
    assert problems == [p for p in catalog.problems if "no genres" not in p]


def test_poster_sources_skip_a_row_that_swallowed_the_rows_after_it(tmp_path):
    csv_path = tmp_path / "MovieGenre.csv"
    csv_path.write_text(
        "imdbId,Title,Genre,Poster\n"
        '114709,"Toy Story (1995),Comedy,http://127.0.0.1:9/a.jpg\n'
        "113497,Jumanji (1995),Adventure,http://127.0.0.1:9/b.jpg\n"
        '113228,Grumpier (1995),Comedy,http://127.0.0.1:9/d.jpg,"\n'
        "114885,Waiting (1995),Drama,http://127.0.0.1:9/e.jpg\n",
        encoding="utf-8",
    )
    with pytest.warns(CatalogWarning, match="never closed"):
        sources, problems = read_poster_sources(csv_path)
    assert [s.id for s in sources] == ["tt0114885"]
    assert any("is never closed" in p for p in problems)
