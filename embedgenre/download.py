"""Download poster images listed in a Kaggle "Movie Genre from its Poster" style CSV.

``download_posters(csv, out_dir)`` reads rows with an id, title, genres and a poster URL
(``imdbId, Title, Genre, Poster``), fetches each URL in a thread pool and writes:

- ``<out_dir>/posters/<id>.<ext>``: each poster that decoded as an image (``ext`` from its format,
  ``.jpg`` for JPEG). Written to a hidden ``.part`` file first and renamed, so a killed run never
  leaves a half-written poster; stale ``.part`` files are removed by the next run.
- ``<out_dir>/movies.csv``: the catalog layout ``read_catalog`` reads, one row per movie whose
  poster is on disk (so ``embedgenre index <out_dir>`` works right after).
- ``<out_dir>/download_report.json``: counts, failures by reason, and every failed row.

Resumable: a poster already on disk that decodes is not fetched again. Retries with exponential
backoff on 5xx, 408, 429, timeouts and connection errors; never on other 4xx answers. An answer
is kept only if its content type is ``image/*`` (or ``application/octet-stream``) AND its bytes
decode with Pillow. Only ``http``/``https`` URLs are fetched.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path

from embedgenre.catalog import (
    _match_columns,
    normalise_imdb_id,
    parse_year,
    read_csv_table,
    split_genres,
    split_title_year,
)
from embedgenre.errors import CatalogError, PosterError

logger = logging.getLogger(__name__)

REPORT_NAME = "download_report.json"
POSTERS_DIR = "posters"
MAX_BYTES = 20 * 1024 * 1024  # a poster larger than this is refused ("too_large")
USER_AGENT = "embedgenre-poster-download/0.1"
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_KNOWN_EXT = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_RETRY_STATUS = {408, 429}


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
    "timeout": "no complete answer within --timeout seconds, after retries",
    "connection": "connection refused/reset or name not resolved, after retries",
    "not_image": "the answer's content type is not an image (e.g. an HTML page)",
    "undecodable": "the bytes do not decode as an image with Pillow",
    "too_large": f"the answer is larger than {MAX_BYTES // (1024 * 1024)} MiB",
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

    Columns are matched like ``read_catalog``'s (``imdbId``/``imdb_id``/``id``, ``Title``,
    ``Genre``/``genres``, ``Poster``); ``columns`` maps fields to other names. Numeric IMDb ids
    become ``tt`` + 7 digits; a year in brackets at the end of the title is split off. Rows
    without an id, and repeated ids (the first is kept), are listed in the problems.
    """
    csv_path = Path(csv_path)
    header, rows, used = read_csv_table(csv_path, encoding)
    if not header:
        raise CatalogError(f"{csv_path} is empty. Fix: pass a CSV with a header row.")
    cols = _match_columns(header, columns, csv_path)
    if cols["poster"] is None:
        raise CatalogError(
            f"{csv_path}: no poster URL column (looked for Poster, poster_path, image); columns "
            f"found: {', '.join(header)}. Fix: map it with columns={{'poster': '<column name>'}}."
        )
    problems = [f"{csv_path.name}: not UTF-8; decoded as {used}"] if used != "utf-8" else []
    sources: list[PosterSource] = []
    first_line: dict[str, int] = {}
    for line, row in rows:

        def cell(fld: str, row: dict = row) -> str:
            value = row.get(cols[fld]) if cols[fld] else None
            return value.strip() if isinstance(value, str) else ""

        raw_id = cell("id")
        if not raw_id:
            if any(isinstance(v, str) and v.strip() for v in row.values()):
                problems.append(f"{csv_path.name} line {line}: no id; row skipped")
            continue
        item_id = normalise_imdb_id(raw_id) or raw_id
        if item_id in first_line:
            problems.append(
                f"{csv_path.name} line {line}: duplicate id {item_id} "
                f"(first at line {first_line[item_id]}); kept the first"
            )
            continue
        first_line[item_id] = line
        title = cell("title") or None
        year, _ = parse_year(cell("year"))
        if title:
            title, title_year = split_title_year(title)
            year = year if year is not None else title_year
        genres = split_genres(cell("genres"), genre_sep)
        sources.append(PosterSource(item_id, title or None, year, genres, cell("poster"), line))
    if not sources:
        raise CatalogError(
            f"{csv_path} holds no rows with an id. Fix: check the file and its columns."
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
    errors, waiting ``backoff * 2**k`` seconds before retry k. ``timeout``: seconds one attempt may
    wait for the server (each connect/read), and for the whole answer (checked between chunks). ``progress(done, total, status)`` is called as each row finishes,
    status being "downloaded", "present" or "failed".
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
            f"--out {out_dir} would overwrite the source {csv_path}. Fix: choose another --out folder."
        )
    sources, problems = read_poster_sources(csv_path, columns=columns, encoding=encoding)
    poster_dir = out_dir / POSTERS_DIR
    try:
        poster_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PosterError(f"Cannot create {poster_dir}: {e.strerror or e}.") from e
    existing = _scan_existing(poster_dir)

    report = DownloadReport(
        source=csv_path.absolute(), out_dir=out_dir.absolute(), problems=problems
    )
    on_disk: dict[str, str] = {}  # id -> poster file name
    start = time.monotonic()

    def job(src: PosterSource) -> tuple[str, str | Failure]:
        return _one(src, existing.get(src.id.lower()), poster_dir, retries, timeout, backoff)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poster")
    try:
        futures = {pool.submit(job, s): s for s in sources}
        for done, fut in enumerate(as_completed(futures), start=1):
            src = futures[fut]
            status, result = fut.result()
            if status == "failed":
                report.failed.append(result)
            else:
                on_disk[src.id] = result
                (report.downloaded if status == "downloaded" else report.present).append(src.id)
            if progress is not None:
                progress(done, len(sources), status)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.monotonic() - start

    order = {s.id: i for i, s in enumerate(sources)}
    report.failed.sort(key=lambda f: order[f.id])
    report.downloaded.sort(key=order.__getitem__)
    report.present.sort(key=order.__getitem__)
    _write_catalog(catalog_path, [s for s in sources if s.id in on_disk], on_disk)
    _write_atomic(out_dir / REPORT_NAME, json.dumps(_report_json(report), indent=2) + "\n")
    logger.debug(
        "posters: %d downloaded, %d already present, %d failed %s",
        len(report.downloaded), len(report.present), len(report.failed), report.failed_by_reason(),
    )  # fmt: skip
    return report


def fetch_image(url: str, timeout: float = 10.0) -> tuple[bytes, str]:
    """One attempt: the answer's bytes and the image extension, or _FetchError with a reason."""
    if not url:
        raise _FetchError("no_url", "no poster URL in the row", retry=False)
    if not url.lower().startswith(("http://", "https://")):
        raise _FetchError("bad_url", f"not an http(s) URL: {url[:200]}", retry=False)
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            ctype = (answer.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            length = answer.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_BYTES:
                raise _FetchError("too_large", f"Content-Length {length} bytes", retry=False)
            chunks, size = [], 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _FetchError(
                        "timeout", f"answer not complete after {timeout:g}s", retry=True
                    )
                chunk = answer.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BYTES:
                    raise _FetchError("too_large", f"more than {MAX_BYTES} bytes", retry=False)
                chunks.append(chunk)
    except urllib.error.HTTPError as e:
        retry = e.code >= 500 or e.code in _RETRY_STATUS
        raise _FetchError(f"http_{e.code}", f"HTTP {e.code} {e.reason}", retry=retry) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise _FetchError("timeout", f"no answer within {timeout:g}s", retry=True) from None
        raise _FetchError("connection", f"{e.reason}", retry=True) from None
    except TimeoutError:
        raise _FetchError("timeout", f"no answer within {timeout:g}s", retry=True) from None
    except (ConnectionError, HTTPException, OSError) as e:
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
            logger.info("re-downloading %s: %s does not decode", src.id, existing)
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
            logger.debug("%s: %s (attempt %d); retrying in %.2fs", src.id, e.detail, attempt, wait)
            time.sleep(wait)
    name = f"{src.id}{ext}"
    try:
        _write_atomic(poster_dir / name, data)
    except OSError as e:
        raise PosterError(
            f"Cannot write {poster_dir / name}: {e.strerror or e}. Fix: check free disk space and permissions."
        ) from e
    return "downloaded", name


def _decoded_ext(data: bytes) -> str:
    """Extension for ``data`` if Pillow fully decodes it, else _FetchError("undecodable")."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            img.load()
    except Exception as e:  # Pillow raises many types for bad bytes
        raise _FetchError("undecodable", f"{type(e).__name__}: {e}"[:300], retry=False) from None
    return _FORMAT_EXT.get(fmt, "." + fmt.lower() if fmt else ".img")


def _scan_existing(poster_dir: Path) -> dict[str, Path]:
    """lower-case id -> poster file already there; removes stale ``.part`` files."""
    found: dict[str, Path] = {}
    for entry in os.scandir(poster_dir):
        if entry.name.startswith(".") and entry.name.endswith(".part"):
            Path(entry.path).unlink(missing_ok=True)
            continue
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in _KNOWN_EXT and entry.is_file():
            found[stem.lower()] = Path(entry.path)
    return found


def _write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
