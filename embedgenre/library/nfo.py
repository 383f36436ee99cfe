"""Media libraries as they stand: finding the movies of a Kodi / Jellyfin / Emby folder tree and
reading their NFO files safely.

A library is searched recursively. A folder holding one video (or a DVD/Blu-ray folder, or a
``movie.nfo``) is one movie: its NFO is ``<video name>.nfo`` or ``movie.nfo``, its poster
``<video name>-poster.jpg``, ``poster.jpg`` or ``folder.jpg`` (or ``.png``). A folder holding
several videos is a flat library: each ``<video name>`` is a movie with its own
``<video name>.nfo`` and ``<video name>-poster.jpg``. Extras folders (``extras``, ``trailers``,
...) and hidden folders are not searched.

NFOs are untrusted input: a file over :data:`MAX_NFO_BYTES`, an XML document that declares
entities or references external ones, a file that is not XML or not a ``<movie>`` and a link that
leads out of the library are skipped with a reason; nothing outside the library is opened.

This module only reads. It knows nothing of catalogs: :func:`embedgenre.catalog.read_library`
turns its movies into catalog items.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

logger = logging.getLogger(__name__)

# An NFO larger than this is not metadata (Kodi's own are a few kB; with cast lists, < 100 kB).
MAX_NFO_BYTES = 1_000_000
VIDEO_EXTENSIONS = frozenset(
    ".mkv .mp4 .m4v .avi .mov .wmv .mpg .mpeg .ts .m2ts .webm .iso .ogv .divx .flv .vob".split()
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Folders that hold a movie's extras, or a disc's structure, never other movies.
EXTRAS_FOLDERS = frozenset(
    {
        "extras", "extra", "featurettes", "behind the scenes", "deleted scenes", "interviews",
        "scenes", "shorts", "trailers", "trailer", "sample", "samples", "other", "others",
        "clips", "subs", "subtitles", "extrafanart", "extrathumbs", "backdrops", "theme-music",
        "video_ts", "bdmv", "certificate", "audio_ts", "@eadir", "lost+found",
    }
)  # fmt: skip
DISC_FOLDERS = ("VIDEO_TS", "BDMV")
# NFOs of other kinds of item sharing a movie library's folders.
OTHER_NFOS = frozenset({"tvshow.nfo", "season.nfo", "collection.nfo", "artist.nfo", "album.nfo"})

# "name-cd1", "name part 2", "name.disc3": the parts of one movie stacked under one name.
_STACK_RE = re.compile(r"[ _.-]*(?:cd|dvd|part|pt|dis[ck])[ _.-]*\d+$", re.IGNORECASE)
_NOT_A_MOVIE_RE = re.compile(r"(?:[ _.-](?:trailer|sample)|^sample)$", re.IGNORECASE)
# Jellyfin's id tags in folder names: "Alien (1979) [imdbid-tt0078748]" or "{tmdb-348}".
_NAME_ID_RE = re.compile(r"\s*[\[{](imdbid|imdb|tmdbid|tmdb)[-=](\w+)[\]}]", re.IGNORECASE)


@dataclass(frozen=True)
class NfoData:
    """What a movie NFO says; values as written (stripped), ``None`` when absent."""

    title: str | None = None
    year: str | None = None
    plot: str | None = None
    genres: tuple[str, ...] = ()
    ids: dict[str, str] = field(default_factory=dict)  # {"imdb": "tt0078748", "tmdb": "348"}


@dataclass(frozen=True)
class LibraryMovie:
    """One movie found in a library. Paths are absolute; ``name`` is the folder's name (one movie
    per folder) or the video's name (a flat folder). ``key`` is its path inside the library
    (POSIX), the same on every machine the library is mounted on."""

    folder: Path
    name: str
    key: str
    video: Path | None
    nfo: Path | None
    poster: Path | None
    data: NfoData | None  # None: no NFO

    @property
    def folder_hash(self) -> str:
        """A stable id for a movie that has no other: a hash of its path inside the library."""
        return hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    @property
    def nfo_target(self) -> Path:
        """Where a new NFO for this movie goes: ``<video name>.nfo`` (read by Kodi, Jellyfin and
        Emby alike), or ``movie.nfo`` for a disc folder."""
        if self.nfo is not None:
            return self.nfo
        if self.video is not None and self.video.is_file():
            return self.video.with_suffix(".nfo")
        return self.folder / "movie.nfo"


@dataclass
class LibraryScan:
    """The movies of a library (in path order) and what was skipped, one reason per line."""

    root: Path
    movies: list[LibraryMovie]
    problems: list[str]


class NfoError(ValueError):
    """An NFO that cannot be used; the message says why (the movie is skipped)."""


def looks_like_library(folder: str | Path, limit: int = 5000) -> bool:
    """True if ``folder`` holds (at any depth, within the first ``limit`` entries seen) an NFO
    or a video file: a media library rather than a catalog file."""
    seen = 0
    for _dirpath, _dirs, files, disc in _walk(Path(folder)):
        if disc:
            return True
        for f in files:
            ext = os.path.splitext(f)[1].lower()
            if ext == ".nfo" or ext in VIDEO_EXTENSIONS:
                return True
        seen += len(files)
        if seen > limit:
            return False
    return False


def scan_library(root: str | Path) -> LibraryScan:
    """Every movie under ``root``, with its NFO read (see the module doc for the layouts)."""
    root = Path(root).absolute()
    real_root = root.resolve()
    movies: list[LibraryMovie] = []
    problems: list[str] = []
    for dirpath, dirs, files, disc in _walk(root):
        folder = Path(dirpath)
        for d in dirs:
            if os.path.islink(folder / d):
                where = (folder / d).relative_to(root).as_posix()
                problems.append(f"{where}: a link to a folder; not followed")
        for group in _movies_in(folder, files, disc, is_root=folder == root):
            movie = _read_movie(root, real_root, folder, files, *group, problems)
            if movie is not None:
                movies.append(movie)
    return LibraryScan(root, movies, problems)


def read_nfo(path: str | Path, root: str | Path | None = None) -> NfoData:
    """Parse one movie NFO safely; raises :class:`NfoError` saying why it cannot be used.

    ``root``: when given, a path (or a link) that leads out of it is refused unopened.
    """
    return parse_nfo(read_nfo_bytes(path, root))


def read_nfo_bytes(path: str | Path, root: str | Path | None = None) -> bytes:
    """The bytes of an NFO, refused (:class:`NfoError`) if it leads out of ``root``, is not a
    regular file, or is larger than :data:`MAX_NFO_BYTES`."""
    path = Path(path)
    if root is not None and not inside(path, Path(root).resolve()):
        raise NfoError("it is a link that leads out of the library; not followed")
    try:
        st = path.stat()
        if not path.is_file():
            raise NfoError("it is not a regular file")
        if st.st_size > MAX_NFO_BYTES:
            raise NfoError(
                f"it is {st.st_size:,} bytes, over the {MAX_NFO_BYTES:,}-byte limit for an NFO"
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_NFO_BYTES + 1)
    except OSError as e:
        raise NfoError(f"it cannot be read ({e.strerror or e})") from e
    if len(raw) > MAX_NFO_BYTES:
        raise NfoError(f"it is over the {MAX_NFO_BYTES:,}-byte limit for an NFO")
    return raw


def parse_nfo(raw: bytes) -> NfoData:
    """Parse the bytes of a movie NFO; no entity is expanded and nothing external is fetched.

    Kodi's "combination" NFO, the XML followed by a scraper URL, is read up to ``</movie>``.
    """
    try:
        root = parse_xml(raw)
    except NfoError:
        end = raw.rfind(b"</movie>") + len(b"</movie>")
        if end < len(b"</movie>") or not raw[end:].strip():
            raise
        root = parse_xml(raw[:end])
    if root.tag != "movie":
        raise NfoError(f"it is not a movie NFO (its root element is <{root.tag}>)")

    def text(tag: str) -> str | None:
        el = root.find(tag)
        value = (el.text or "").strip() if el is not None else ""
        return value or None

    genres: list[str] = []
    for el in root.findall("genre"):
        # Some tools write several genres in one element: "Action / Adventure".
        for part in re.split(r"\s+/\s+", (el.text or "").strip()):
            if part and part not in genres:
                genres.append(part)
    ids: dict[str, str] = {}
    for el in root.findall("uniqueid"):
        kind, value = (el.get("type") or "").strip().lower(), (el.text or "").strip()
        if kind and value:
            ids.setdefault(kind, value)
    for tag, kind in (("imdbid", "imdb"), ("tmdbid", "tmdb"), ("id", None)):
        value = text(tag)
        if value and kind:
            ids.setdefault(kind, value)
        elif value and re.fullmatch(r"tt\d{5,9}", value):  # Kodi's old <id> held the IMDb id
            ids.setdefault("imdb", value)
    year = text("year") or (text("premiered") or "")[:4] or None
    return NfoData(
        title=text("title") or text("originaltitle"),
        year=year,
        plot=text("plot") or text("outline"),
        genres=tuple(genres),
        ids=ids,
    )


def parse_xml(raw: bytes) -> Element:
    """The root element of an XML document, refused (:class:`NfoError`) if it is not XML or has
    a DTD (where entity bombs, the "billion laughs", and external entities are declared)."""
    from xml.etree.ElementTree import ParseError  # here: reading a library is the only user

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        return fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        # NFOs never need a DTD; one is how entity bombs and external references come in
        raise NfoError(
            f"it has a <!DOCTYPE> or XML entities, which are neither expanded nor followed ({e})"
        ) from e
    except ParseError as e:
        raise NfoError(f"it is not well-formed XML ({e})") from e
    except (ValueError, LookupError) as e:  # an unknown declared encoding
        raise NfoError(f"it cannot be decoded ({e})") from e


def inside(path: Path, real_root: Path) -> bool:
    """True if ``path``, links resolved, lies in ``real_root`` (itself resolved)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(real_root)
    except (OSError, ValueError):
        return False


def name_ids(name: str) -> tuple[str, dict[str, str]]:
    """``"Alien (1979) [imdbid-tt0078748]"`` -> (``"Alien (1979)"``, ``{"imdb": "tt0078748"}``)."""
    ids = {}
    for kind, value in _NAME_ID_RE.findall(name):
        ids.setdefault("imdb" if kind.lower().startswith("imdb") else "tmdb", value)
    return _NAME_ID_RE.sub("", name).strip(), ids


# ---------------------------------------------------------------------------------------------
# internals


def _walk(root: Path):
    """``os.walk`` without links to folders and without hidden or extras folders, sorted; with
    each folder's disc folders (``VIDEO_TS``, ``BDMV``), which are not searched."""
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        disc = [d for d in dirs if d.upper() in DISC_FOLDERS]
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d.lower() not in EXTRAS_FOLDERS
        )
        yield dirpath, dirs, sorted(files), disc


def _movies_in(folder: Path, files: list[str], disc: list[str], is_root: bool):
    """(name, stem of the video or None, the video's path or None, own folder?) per movie; the
    library's own folder is always flat (its name is no movie's)."""
    lower = {f.lower(): f for f in files}
    stacks: dict[str, str] = {}  # movie stem -> first video file name
    for f in files:
        stem, ext = os.path.splitext(f)
        if ext.lower() in VIDEO_EXTENSIONS and not _NOT_A_MOVIE_RE.search(stem):
            stacks.setdefault(_STACK_RE.sub("", stem) or stem, f)
    nfo_stems = [
        os.path.splitext(f)[0]
        for f in files
        if f.lower().endswith(".nfo") and f.lower() not in OTHER_NFOS and f.lower() != "movie.nfo"
    ]
    if disc or (not is_root and len(stacks) <= 1 and (stacks or "movie.nfo" in lower)):
        stem = next(iter(stacks), None)
        video = folder / stacks[stem] if stem else (folder / disc[0] if disc else None)
        yield folder.name, stem, video, True
        return
    if (
        not is_root and not stacks and len(nfo_stems) == 1
    ):  # an NFO and its poster, the video kept elsewhere
        yield folder.name, nfo_stems[0], None, True
        return
    for stem in sorted(set(stacks) | set(nfo_stems)):
        yield stem, stem, folder / stacks[stem] if stem in stacks else None, False


def _read_movie(
    root: Path,
    real_root: Path,
    folder: Path,
    files: list[str],
    name: str,
    stem: str | None,
    video: Path | None,
    own_folder: bool,
    problems: list[str],
) -> LibraryMovie | None:
    lower = {f.lower(): f for f in files}
    rel = folder.relative_to(root).as_posix()
    key = rel if own_folder else (stem if rel == "." else f"{rel}/{stem}")
    where = key if key not in ("", ".") else "(library root)"

    def pick(names: list[str]) -> Path | None:
        for n in names:
            if n.lower() in lower:
                return folder / lower[n.lower()]
        return None

    stems = [stem] if stem else []
    nfo = pick([f"{s}.nfo" for s in stems] + (["movie.nfo"] if own_folder else []))
    poster_names = [f"{s}-poster{e}" for s in stems for e in IMAGE_EXTENSIONS]
    if own_folder:
        poster_names += [f"{n}{e}" for n in ("poster", "folder", "cover") for e in IMAGE_EXTENSIONS]
    poster = pick(poster_names)
    if poster is not None and not inside(poster, real_root):
        problems.append(f"{where}: poster {poster.name} leads out of the library; not used")
        poster = None
    data = None
    if nfo is not None:
        try:
            data = read_nfo(nfo, real_root)
        except NfoError as e:
            problems.append(f"{where}: {nfo.name} skipped: {e}")
            logger.debug("skipping %s: %s", nfo, e)
            return None
    return LibraryMovie(folder, name, key, video, nfo, poster, data)
