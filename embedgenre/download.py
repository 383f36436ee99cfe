"""Download poster images listed in a Kaggle "Movie Genre from its Poster" style CSV.

``download_posters(csv, out_dir)`` reads rows with an id, title, genres and a poster URL
(``imdbId, Title, Genre, Poster``), fetches each URL in a thread pool and writes:

- ``<out_dir>/posters/<name>.<ext>``: each poster that decoded as an image (``name`` is
  ``catalog.poster_stem(id)``: the id itself for plain ids like ``tt0114709``, never a path;
  ``ext`` from its format, ``.jpg`` for JPEG). Written to a hidden temporary file first and
  renamed, so a killed run never leaves a half-written poster; stale temporary files are removed by
  the next run.
- ``<out_dir>/movies.csv``: the catalog layout ``read_catalog`` reads, one row per movie whose
  poster is on disk (so ``embedgenre index <out_dir>`` works right after).
- ``<out_dir>/download_report.json``: counts, failures by reason, and every failed row.

Both files are written even when the run stops early (Ctrl-C, an error), with what was done by
then. A row that cannot be fetched or written is a listed failure; it never stops the run.
Resumable: a poster already on disk that decodes is not fetched again. Retries with exponential
backoff on 5xx, 408, 429, timeouts and connection errors; never on other 4xx answers. An answer
is kept only if its content type is ``image/*`` (or ``application/octet-stream``), its header
declares no more pixels than Pillow's decompression-bomb limit (the one ``embedgenre.images``
refuses beyond) AND its bytes decode with Pillow. Only ``http``/``https`` URLs are fetched, and
redirects are followed only to ``http``/``https``. Each attempt has a wall-clock deadline of
``timeout`` seconds for the whole answer, however slowly the server sends it.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path

from embedgenre.catalog.rows import open_table, read_rows
from embedgenre.catalog.text import brief, poster_stem
from embedgenre.errors import CatalogError, PosterError, WriteError
from embedgenre.images import _OPEN_LOCK
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

REPORT_NAME = "download_report.json"
POSTERS_DIR = "posters"
MAX_BYTES = 20 * 1024 * 1024  # a poster larger than this is refused ("too_large")
USER_AGENT = "embedgenre-poster-download/0.1"
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_KNOWN_EXT = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_RETRY_STATUS = {408, 429}
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class PosterSource:
    """One CSV row to fetch: the movie's id, metadata for movies.csv, and its poster URL."""

    id: str
    title: str | None
    year: int | None
    genres: tuple[str, ...]
    url: str
    line: int


@dataclass(frozen=True)
class Failure:
    """A row whose poster could not be had. ``reason`` is one of the REASONS keys."""

    id: str
    url: str
    reason: str
    detail: str
    attempts: int


REASONS = {
    "no_url": "the row has no poster URL",
    "bad_url": "not an http(s) URL",
    "http_<code>": "the server answered with this HTTP error status (after retries for 5xx)",
    "bad_redirect": "the server redirected to a URL that is not http(s)",
    "timeout": "no complete answer within --timeout seconds, after retries",
    "connection": "connection refused/reset or name not resolved, after retries",
    "not_image": "the answer's content type is not an image (e.g. an HTML page)",
    "undecodable": "the bytes do not decode as an image with Pillow",
    "too_large": f"the answer is larger than {MAX_BYTES // (1024 * 1024)} MiB",
    "too_many_pixels": "the image header declares more pixels than a poster may have "
    "(a possible decompression bomb); not decoded",
    "write_error": "the poster could not be written to --out (disk full, permissions)",
    "error": "an unexpected error while handling this row (see the detail)",
}


@dataclass
class DownloadReport:
    """What one run did. ``downloaded``/``present`` hold ids; ``failed`` holds Failures."""

    source: Path
    out_dir: Path
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False  # the run stopped early (Ctrl-C, an error); the rest not attempted
    not_attempted: int = 0

    def failed_by_reason(self) -> dict[str, int]:
        counts = Counter(f.reason for f in self.failed)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict:
        return {
            "source": str(self.source),
            "out_dir": str(self.out_dir),
            "catalog": str(self.out_dir / "movies.csv"),
            "report": str(self.out_dir / REPORT_NAME),
            "downloaded": len(self.downloaded),
            "already_present": len(self.present),
            "failed": len(self.failed),
            "failed_by_reason": self.failed_by_reason(),
            "interrupted": self.interrupted,
            "not_attempted": self.not_attempted,
            "seconds": round(self.seconds, 3),
            "problems": list(self.problems),
            "failures": [asdict(f) for f in self.failed],
        }


class _FetchError(Exception):
    def __init__(self, reason: str, detail: str, retry: bool):
        super().__init__(detail)
        self.reason, self.detail, self.retry = reason, detail, retry


def read_poster_sources(
    csv_path: str | Path,
    columns: Mapping[str, str] | None = None,
    encoding: str | None = None,
    genre_sep: str = "|",
) -> tuple[list[PosterSource], list[str]]:
    """Rows of a MovieGenre-style CSV as PosterSources, and the row problems found.

    Rows are read by the catalog's row reader, as the Kaggle layout reads them: columns matched
    like ``read_catalog``'s (``imdbId``/``imdb_id``/``id``, ``Title``, ``Genre``/``genres``,
    ``Poster``; ``columns`` maps fields to other names), numeric IMDb ids made ``tt`` + 7 digits,
    a year in brackets at the end of the title split off. Rows without an id, repeated ids (the
    first is kept) and rows with extra fields are listed in the problems.
    """
    table = open_table(csv_path, columns, encoding)
    if table.columns["poster"] is None:
        raise CatalogError(
            f"{table.source}: no poster URL column (looked for Poster, poster_path, image); "
            f"columns found: {', '.join(table.header)}.",
            "Fix: map the field to it: poster=COLUMN.",
            param="columns",
        )
    problems = list(table.problems)
    rows = read_rows(table, imdb_ids=True, title_years=True, genre_sep=genre_sep, problems=problems)
    sources = [PosterSource(r.id, r.title, r.year, r.genres, r.poster, r.line) for r in rows]
    if not sources:
        raise CatalogError(
            f"{table.source} holds no rows with an id. Fix: check the file and its columns."
        )
    return sources, problems


def download_posters(
    csv_path: str | Path,
    out_dir: str | Path,
    workers: int = 8,
    retries: int = 3,
    timeout: float = 10.0,
    *,
    backoff: float = 0.5,
    columns: Mapping[str, str] | None = None,
    encoding: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> DownloadReport:
    """Fetch every row's poster into ``out_dir`` (see the module doc for what is written).

    ``workers``: concurrent downloads. ``retries``: extra attempts after the first for retryable
    errors, waiting ``backoff * 2**k`` seconds before retry k. ``timeout``: wall-clock seconds one
    attempt may take, from connecting to the last byte of the answer. ``progress(done, total,
    status)`` is called as each row finishes, status being "downloaded", "present" or "failed".
    If the run is interrupted, movies.csv and the report still list what was done, and the
    exception is raised again.
    """
    if workers < 1 or retries < 0 or timeout <= 0:
        raise PosterError(
            f"Bad download settings workers={workers}, retries={retries}, timeout={timeout}: "
            "need workers >= 1, retries >= 0, timeout > 0."
        )
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    catalog_path = out_dir / "movies.csv"
    if catalog_path.exists() and catalog_path.resolve() == csv_path.resolve():
        raise PosterError(
            f"{out_dir} would overwrite the source {csv_path}.",
            "Fix: choose another output folder.",
            param="out_dir",
        )
    sources, problems = read_poster_sources(csv_path, columns=columns, encoding=encoding)
    run = _Downloads(csv_path, out_dir, problems, retries, timeout, backoff)
    report = run.fetch_all(sources, workers, progress, catalog_path)
    logger.debug(
        "posters: %d downloaded, %d already present, %d failed %s",
        len(report.downloaded), len(report.present), len(report.failed), report.failed_by_reason(),
    )  # fmt: skip
    return report


class _Downloads:
    """One run of :func:`download_posters` into ``out_dir``: the rows' posters fetched on a
    thread pool, each result collected into the report, and movies.csv and the report written
    for what was done, even when the run is interrupted."""

    def __init__(
        self,
        csv_path: Path,
        out_dir: Path,
        problems: list,
        retries: int,
        timeout: float,
        backoff: float,
    ):
        self.poster_dir = out_dir / POSTERS_DIR
        try:
            self.poster_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PosterError(f"Cannot create {self.poster_dir}: {e.strerror or e}.") from e
        self.existing = _scan_existing(self.poster_dir)
        self.retries, self.timeout, self.backoff = retries, timeout, backoff
        self.report = DownloadReport(
            source=csv_path.absolute(), out_dir=out_dir.absolute(), problems=problems
        )
        self.on_disk: dict[str, str] = {}  # id -> poster file name
        self.handled: set = set()  # the futures whose result is in the report
        self.start = time.monotonic()

    def fetch_all(
        self,
        sources: list[PosterSource],
        workers: int,
        progress: Callable[[int, int, str], None] | None,
        catalog_path: Path,
    ) -> DownloadReport:
        """Fetch every row's poster on ``workers`` threads, reporting each as it finishes."""
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poster")
        futures: dict = {}
        try:
            futures = {pool.submit(self._job, s): s for s in sources}
            for done, fut in enumerate(as_completed(futures), start=1):
                status = self._collect(fut, futures[fut])
                if progress is not None:
                    progress(done, len(sources), status)
        except BaseException:
            self.report.interrupted = True
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            try:
                pool.shutdown(wait=True)  # downloads under way end within their deadline
            finally:
                self._finish(futures, sources, catalog_path)
        return self.report

    def _job(self, src: PosterSource) -> tuple[str, str | Failure]:
        try:
            found = self.existing.get(poster_stem(src.id).lower())
            return _one(src, found, self.poster_dir, self.retries, self.timeout, self.backoff)
        except Exception as e:  # one row must never stop the run
            logger.warning(
                "poster %s: unexpected %s", brief(src.id), type(e).__name__, exc_info=True
            )
            return "failed", Failure(src.id, src.url, "error", f"{type(e).__name__}: {e}"[:300], 1)

    def _collect(self, fut, src: PosterSource) -> str:
        self.handled.add(fut)
        status, result = fut.result()
        if status == "failed":
            self.report.failed.append(result)
        else:
            self.on_disk[src.id] = result
            (self.report.downloaded if status == "downloaded" else self.report.present).append(
                src.id
            )
        return status

    def _finish(self, futures: dict, sources: list[PosterSource], catalog_path: Path) -> None:
        """Collect what finished after an interruption, count the rows never attempted, and
        write movies.csv and the report."""
        report = self.report
        for fut, src in futures.items():
            if fut not in self.handled and fut.done() and not fut.cancelled():
                if fut.exception() is None:
                    self._collect(fut, src)
        finished = len(report.downloaded) + len(report.present) + len(report.failed)
        report.not_attempted = len(sources) - finished
        report.seconds = time.monotonic() - self.start
        _save_outputs(report, sources, self.on_disk, catalog_path)


def fetch_image(url: str, timeout: float = 10.0) -> tuple[bytes, str]:
    """One attempt: the answer's bytes and the image extension, or _FetchError with a reason.

    ``timeout`` bounds the whole attempt (connecting, redirects, headers and every read): when it
    runs out the connection is shut and the attempt fails with reason "timeout".
    """
    if not url:
        raise _FetchError("no_url", "no poster URL in the row", retry=False)
    if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
        raise _FetchError("bad_url", f"not an http(s) URL: {url[:200]}", retry=False)
    deadline = _Deadline(timeout)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    late = _FetchError("timeout", f"answer not complete after {timeout:g}s", retry=True)
    try:
        with deadline, _opener(deadline).open(request, timeout=timeout) as answer:
            ctype = (answer.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            length = answer.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_BYTES:
                raise _FetchError("too_large", f"Content-Length {length} bytes", retry=False)
            chunks, size = [], 0
            while True:
                chunk = answer.read1(64 * 1024)  # returns what one read of the socket gives
                if deadline.expired:
                    raise late
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BYTES:
                    raise _FetchError("too_large", f"more than {MAX_BYTES} bytes", retry=False)
                chunks.append(chunk)
    except _FetchError:
        raise
    except urllib.error.HTTPError as e:
        retry = e.code >= 500 or e.code in _RETRY_STATUS
        raise _FetchError(f"http_{e.code}", f"HTTP {e.code} {e.reason}", retry=retry) from None
    except urllib.error.URLError as e:
        if deadline.expired or isinstance(e.reason, TimeoutError):
            raise late from None
        raise _FetchError("connection", f"{e.reason}", retry=True) from None
    except TimeoutError:
        raise late from None
    except (ConnectionError, HTTPException, OSError) as e:
        if deadline.expired:
            raise late from None
        raise _FetchError("connection", f"{type(e).__name__}: {e}", retry=True) from None
    except ValueError as e:  # urllib's "unknown url type" and friends
        raise _FetchError("bad_url", str(e), retry=False) from None
    data = b"".join(chunks)
    if not (
        ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")
    ):
        raise _FetchError("not_image", f"content type {ctype or '(none)'!r}", retry=False)
    return data, _decoded_ext(data)


# ---------------------------------------------------------------------------------------------


class _Deadline:
    """A wall-clock limit on one attempt: when it passes, the connection's socket is shut down,
    which ends any read or write blocked on it (a server sending a byte a second included)."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has already)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed, or not connected yet


def _watched_connection(http_class, deadline: _Deadline, host, **kwargs):
    """An http.client connection whose sockets are shut when ``deadline`` passes."""
    conn = http_class(host, **kwargs)
    connect = conn.connect

    def create_connection(*args, **kw):
        sock = socket.create_connection(*args, **kw)
        deadline.watch(sock)
        return sock

    def watched_connect():
        connect()
        deadline.watch(conn.sock)  # for https: the TLS socket that wraps the one above

    conn._create_connection = create_connection
    conn.connect = watched_connect
    return conn


class _Watched:
    """Mixin for urllib's HTTP(S) handlers: every connection they open is watched by a deadline."""

    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def do_open(self, http_class, req, **kwargs):
        return super().do_open(
            functools.partial(_watched_connection, http_class, self._deadline), req, **kwargs
        )


class _HTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    pass


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an http(s) URL; any other scheme fails as "bad_redirect"."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        if target:
            self._check(urllib.parse.urljoin(req.full_url, target), code, fp)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self._check(newurl, code, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    @staticmethod
    def _check(url: str, code: int, fp) -> None:
        if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
            fp.close()
            raise _FetchError(
                "bad_redirect", f"HTTP {code} redirect to {url[:200]}: not http(s)", retry=False
            )


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener for http and https only (no ftp:, file: or data:), bounded by ``deadline``."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _HTTPHandler(deadline),
        _HTTPSHandler(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _one(
    src: PosterSource,
    existing: Path | None,
    poster_dir: Path,
    retries: int,
    timeout: float,
    backoff: float,
) -> tuple[str, str | Failure]:
    if existing is not None:
        try:
            _decoded_ext(existing.read_bytes())
            return "present", existing.name
        except (_FetchError, OSError):
            logger.info("re-downloading %s: %s does not decode", brief(src.id), existing)
            existing.unlink(missing_ok=True)
    attempt = 0
    while True:
        attempt += 1
        try:
            data, ext = fetch_image(src.url, timeout)
            break
        except _FetchError as e:
            if not e.retry or attempt > retries:
                return "failed", Failure(src.id, src.url, e.reason, e.detail, attempt)
            wait = min(backoff * 2 ** (attempt - 1), 30.0)
            logger.debug(
                "%s: %s (attempt %d); retrying in %.2fs", brief(src.id), e.detail, attempt, wait
            )
            time.sleep(wait)
    name = f"{poster_stem(src.id)}{ext}"
    try:
        _write_atomic(poster_dir / name, data)
    except (OSError, WriteError) as e:
        detail = f"cannot write {POSTERS_DIR}/{name}: {getattr(e, 'strerror', None) or e}"
        return "failed", Failure(src.id, src.url, "write_error", detail, attempt)
    return "downloaded", name


def _decoded_ext(data: bytes) -> str:
    """Extension for ``data`` if Pillow fully decodes it, else _FetchError with the reason.

    The pixel count in the header is checked before decoding: an image over Pillow's
    ``MAX_IMAGE_PIXELS`` (which ``embedgenre.images`` refuses) fails as "too_many_pixels".
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        # Image.open parses the header only; its bomb warning becomes an error here. Changing
        # warning filters is process-wide, so this shares embedgenre.images' lock.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise _FetchError("too_many_pixels", str(e)[:300], retry=False) from None
    except Exception as e:  # Pillow raises many types for bad bytes
        raise _FetchError("undecodable", f"{type(e).__name__}: {e}"[:300], retry=False) from None
    with img:
        width, height = img.size
        if limit and width * height > limit:
            raise _FetchError(
                "too_many_pixels",
                f"{width}x{height} = {width * height:,} pixels, over the {limit:,} limit",
                retry=False,
            )
        fmt = img.format or ""
        try:
            img.load()
        except Exception as e:
            raise _FetchError(
                "undecodable", f"{type(e).__name__}: {e}"[:300], retry=False
            ) from None
    return _FORMAT_EXT.get(fmt, "." + fmt.lower() if fmt else ".img")


def _scan_existing(poster_dir: Path) -> dict[str, Path]:
    """lower-case id -> poster file already there; removes stale ``.part`` files."""
    found: dict[str, Path] = {}
    for entry in os.scandir(poster_dir):
        if entry.name.startswith(".") and entry.name.endswith((".part", atomic.TMP_SUFFIX)):
            Path(entry.path).unlink(missing_ok=True)
            continue
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in _KNOWN_EXT and entry.is_file():
            found[stem.lower()] = Path(entry.path)
    return found


def _write_atomic(path: Path, data: bytes | str) -> None:
    atomic.write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def _save_outputs(
    report: DownloadReport,
    sources: list[PosterSource],
    on_disk: dict[str, str],
    catalog_path: Path,
) -> None:
    """Write movies.csv and the report for what was done. After an interruption a write error
    is logged, not raised, so that the interruption itself is what the caller sees."""
    order = {s.id: i for i, s in enumerate(sources)}
    report.failed.sort(key=lambda f: order[f.id])
    report.downloaded.sort(key=order.__getitem__)
    report.present.sort(key=order.__getitem__)
    path = catalog_path
    try:
        _write_catalog(catalog_path, [s for s in sources if s.id in on_disk], on_disk)
        path = report.out_dir / REPORT_NAME
        _write_atomic(path, json.dumps(_report_json(report), indent=2) + "\n")
    except (OSError, WriteError) as e:
        message = (
            f"Cannot write {path}: {e.strerror or e}. Fix: check free disk space and permissions."
        )
        if report.interrupted:
            logger.error("%s", message)
            return
        raise PosterError(message) from e
    if report.interrupted:
        logger.warning(
            "download stopped early: %d poster(s) on disk are listed in %s; %d row(s) not "
            "attempted (run again to resume)", len(on_disk), catalog_path, report.not_attempted,
        )  # fmt: skip


def _write_catalog(path: Path, sources: list[PosterSource], files: dict[str, str]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["imdb_id", "title", "year", "genres", "plot", "poster"])
    for s in sources:
        year = "" if s.year is None else str(s.year)
        writer.writerow(
            [s.id, s.title or "", year, "|".join(s.genres), "", f"{POSTERS_DIR}/{files[s.id]}"]
        )
    _write_atomic(path, buf.getvalue())


def _report_json(report: DownloadReport) -> dict:
    out = report.to_dict()
    out["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out["reasons"] = REASONS
    return out
