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
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from embedgenre.catalog.rows import open_table, read_rows
from embedgenre.catalog.text import brief, poster_stem
from embedgenre.errors import CatalogError, PosterError, WriteError
from embedgenre.fetch import MAX_BYTES, FetchError, decoded_ext, fetch_image
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

REPORT_NAME = "download_report.json"
POSTERS_DIR = "posters"
_KNOWN_EXT = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


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
            decoded_ext(existing.read_bytes())
            return "present", existing.name
        except (FetchError, OSError):
            logger.info("re-downloading %s: %s does not decode", brief(src.id), existing)
            existing.unlink(missing_ok=True)
    attempt = 0
    while True:
        attempt += 1
        try:
            data, ext = fetch_image(src.url, timeout)
            break
        except FetchError as e:
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
