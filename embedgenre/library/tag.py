"""Tagging a media library in place: predicted genres written into the movies' NFO files, each
write journalled so that :func:`undo_tags` restores every file byte for byte.

    predictor = Predictor.open("indexes/movies")
    plan = tag_library("~/Movies", predictor)               # a dry run: what would be added
    plan = tag_library("~/Movies", predictor, write=True)   # written, journalled
    undo_tags("~/Movies")                                   # every changed file as it was

Predictions come from :class:`~embedgenre.predict.Predictor`. By default only movies whose NFO
has no ``<genre>`` are tagged, with the genres the head predicts (its tuned thresholds);
``add=True`` also adds missing genres to labelled movies, ``min_score`` raises the bar for
every addition, ``create_nfo=True`` writes a new NFO for movies that have none.

The journal is ``<library>/.embedgenre/tag-journal.jsonl``: one line per write (the file's path
inside the library, the SHA-256 of its bytes before and after) with the original bytes kept under
``.embedgenre/tag-backups/``. A journal line is on disk before the file is replaced, and each
file is replaced atomically with its permission bits kept, so a run killed at any moment leaves
every file whole and undoable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from embedgenre.catalog import Catalog, normalise_genre, read_library
from embedgenre.errors import CatalogError, WriteError
from embedgenre.library.edit import add_genres, new_nfo
from embedgenre.library.nfo import LibraryMovie, NfoError, inside, read_nfo_bytes
from embedgenre.predict import Predictor
from embedgenre.store.atomic import fsync_dir, write_bytes, write_error

logger = logging.getLogger(__name__)

STATE_DIR = ".embedgenre"
JOURNAL = "tag-journal.jsonl"
BACKUPS = "tag-backups"
LOCK = "tag.lock"
# What a movie's entry says is done with it.
ACTIONS = ("add", "create", "keep", "skip")


@dataclass
class GenreAdded:
    genre: str  # as written: the library's own spelling of the predicted genre
    score: float


@dataclass
class TagEntry:
    """One movie: what it has, what would be (or was) added, and why not when nothing is."""

    id: str
    title: str | None
    year: int | None
    path: str  # the NFO (or the one to create) inside the library, POSIX
    action: str  # one of ACTIONS
    genres: list[str]  # the genres its NFO has
    add: list[GenreAdded] = field(default_factory=list)
    reason: str | None = None  # for keep / skip
    written: bool = False


@dataclass
class TagPlan:
    """The answer of :func:`tag_library`; ``to_dict()`` is the ``--json`` document."""

    library: Path
    head: dict
    write: bool
    entries: list[TagEntry]
    problems: list[str]  # movies the library scan skipped (broken or hostile NFOs), and why

    def counts(self) -> dict[str, int]:
        c = Counter(e.action for e in self.entries)
        return {
            **{a: c[a] for a in ACTIONS},
            "written": sum(e.written for e in self.entries),
            "problems": len(self.problems),
        }

    def to_dict(self) -> dict:
        return {
            "library": str(self.library),
            "head": self.head,
            "write": self.write,
            "counts": self.counts(),
            "movies": [asdict(e) for e in self.entries],
            "problems": list(self.problems),
        }


@dataclass
class UndoResult:
    """Files restored (or removed, when embedgenre created them), files left alone because they
    were edited since (with the reason), and journal lines that needed nothing."""

    library: Path
    restored: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # {"path", "reason"}
    unchanged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "library": str(self.library),
            "restored": list(self.restored),
            "refused": list(self.refused),
            "unchanged": list(self.unchanged),
        }


def tag_library(
    library: str | Path,
    predictor: Predictor,
    *,
    write: bool = False,
    add: bool = False,
    min_score: float | None = None,
    create_nfo: bool = False,
    batch_size: int = 64,
) -> TagPlan:
    """Predict the genres missing from a library's NFOs and, with ``write=True``, add them.

    Parameters
    ----------
    library : str or Path
        The media library folder (searched recursively, see :mod:`embedgenre.library.nfo`).
    predictor : Predictor
        Predicts each movie's genres from its poster and plot (its head chosen as for a catalog).
    write : bool
        Add the genres to the NFO files, journalled; False (default) is a dry run.
    add : bool
        Also add missing genres to movies whose NFO has genres.
    min_score : float, optional
        Add only genres scored at least this, in [0, 1] (default: the head's thresholds alone).
    create_nfo : bool
        Write a new NFO for movies that have none (never done otherwise).
    batch_size : int
        Movies per prediction batch.

    Returns
    -------
    TagPlan
        Per movie the genres added (or that a dry run would add) with their scores, or why not.
    """
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise CatalogError(f"min_score must lie in [0, 1], got {min_score!r}.")
    root = _library_root(library)
    movies, problems = read_library(root)
    spelling = _spellings(movies)
    wanted = [(m, it) for m, it in movies if add or not it.genres]
    head: dict = {}
    predicted: dict[str, dict] = {}
    if wanted:
        catalog = Catalog.from_items([it for _, it in wanted], root=root, layout="library")
        head, rows = predictor.predict_catalog(catalog, batch_size=batch_size, top=None)
        predicted = {r["id"]: r for r in rows}
    entries = []
    for movie, item in movies:
        entry = TagEntry(
            item.id, item.title, item.year, _rel(movie.nfo_target, root), "keep",
            list(movie.data.genres if movie.data else ()),
        )  # fmt: skip
        entries.append(entry)
        row = predicted.get(item.id)
        if row is None:
            entry.reason = "has genres (left as it is unless asked to add to labelled movies)"
            continue
        if row["error"]:
            entry.action, entry.reason = "skip", row["error"]
            continue
        have = set(item.genres)
        for g in row["genres"]:
            score = float(row["scores"][g])
            if g not in have and (min_score is None or score >= min_score):
                entry.add.append(GenreAdded(spelling.get(g, g), round(score, 4)))
        if not entry.add:
            entry.reason = "no genre predicted above the threshold"
        elif movie.nfo is not None:
            entry.action = "add"
        elif create_nfo:
            entry.action = "create"
        else:
            entry.action, entry.reason = "skip", "no NFO (one is created only when asked)"
    plan = TagPlan(root, head, write, entries, problems)
    if write:
        _write(plan, {it.id: m for m, it in movies})
    return plan


def undo_tags(library: str | Path) -> UndoResult:
    """Restore every file the journal says was changed, newest change first, byte for byte.

    A file edited since it was written is left as it is and reported; its journal line and
    backup are kept, so a later call can finish once the file is put back.

    Parameters
    ----------
    library : str or Path
        The media library folder that :func:`tag_library` wrote to.

    Returns
    -------
    UndoResult
        The files restored (or removed, if created), refused (with the reason) and unchanged.
    """
    root = _library_root(library)
    result = UndoResult(root)
    state = root / STATE_DIR
    journal = state / JOURNAL
    if not journal.is_file():
        return result
    with _locked(state):
        lines = _read_journal(journal)
        kept: list[dict] = []
        refused_paths: dict[str, str] = {}
        for rec in reversed(lines):
            rel = rec["path"]
            if rel in refused_paths:  # an older write of a file already refused
                kept.append(rec)
                continue
            outcome = _undo_one(root, state, rec)
            if outcome == "restored":
                result.restored.append(rel)
            elif outcome == "unchanged":
                result.unchanged.append(rel)
            else:
                refused_paths[rel] = outcome
                result.refused.append({"path": rel, "reason": outcome})
                kept.append(rec)
        kept.reverse()
        _rewrite_journal(journal, kept)
        needed = {r["backup"] for r in kept if r.get("backup")}
        for f in (state / BACKUPS).glob("*.nfo"):
            if f.name not in needed:
                f.unlink(missing_ok=True)
    if not kept:  # all undone: the library holds nothing of embedgenre's any more
        shutil.rmtree(state, ignore_errors=True)
    result.restored = list(dict.fromkeys(result.restored))
    return result


# ---------------------------------------------------------------------------------------------
# internals


def _library_root(library: str | Path) -> Path:
    root = Path(library).expanduser().absolute()
    if not root.is_dir():
        raise CatalogError(
            f"Library {root} is not a folder. Fix: pass the folder your media server scans."
        )
    return root


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spellings(movies: list) -> dict[str, str]:
    """Canonical genre -> the spelling most NFOs of this library use ("Science Fiction")."""
    seen: dict[str, Counter] = {}
    for movie, _ in movies:
        for raw in movie.data.genres if movie.data else ():
            canonical = normalise_genre(raw)
            if canonical:
                seen.setdefault(canonical, Counter())[raw] += 1
    return {g: c.most_common(1)[0][0] for g, c in seen.items()}


class _locked:
    """The library's tag lock: one writer (a tag run or an undo) at a time."""

    def __init__(self, state: Path):
        self.state = state

    def __enter__(self):
        try:
            self.state.mkdir(exist_ok=True)
        except OSError as e:
            raise write_error(self.state, e) from e
        self.lock = FileLock(str(self.state / LOCK))
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise WriteError(
                f"another embedgenre tag run is changing {self.state.parent}; wait for it to "
                "finish and run again. Nothing was changed."
            ) from None
        return self

    def __exit__(self, *exc):
        self.lock.release()


def _write(plan: TagPlan, by_id: dict[str, LibraryMovie]) -> None:
    root = plan.library
    real_root = root.resolve()
    state = root / STATE_DIR
    todo = [e for e in plan.entries if e.action in ("add", "create")]
    if not todo:
        return
    with _locked(state), open(state / JOURNAL, "ab") as journal:
        for entry in todo:
            movie = by_id[entry.id]
            names = [g.genre for g in entry.add]
            try:
                if entry.action == "add":
                    path = Path(os.path.realpath(movie.nfo))
                    original = read_nfo_bytes(path, real_root)
                    data, mode = add_genres(original, names), os.stat(path).st_mode & 0o7777
                    if data == original:
                        raise NfoError("it has these genres already (edited since it was read)")
                else:
                    path, original, mode = movie.nfo_target, None, None
                    if path.exists():
                        raise NfoError("an NFO appeared there since the library was read")
                    ids = {"imdb": entry.id} if entry.id.startswith("tt") else None
                    data = new_nfo(names, entry.title, entry.year, ids)
            except (NfoError, OSError) as e:
                entry.action, entry.reason = "skip", f"not written: {e}"
                continue
            backup = None
            if original is not None:
                backup = f"{_sha(original)}.nfo"
                if not (state / BACKUPS / backup).is_file():
                    write_bytes(state / BACKUPS / backup, original)
            record = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "path": _rel(path, real_root) if original is not None else _rel(path, root),
                "before": _sha(original) if original is not None else None,
                "after": _sha(data),
                "backup": backup,
                "added": names,
            }
            _append(journal, record, state / JOURNAL)
            try:
                write_bytes(path, data, mode=mode)  # a new file: the umask decides
            except WriteError as e:  # this file only (its folder read-only, say): go on
                entry.action, entry.reason = "skip", f"not written: {e}"
                continue
            entry.written = True
            logger.debug("wrote %s: + %s", path, ", ".join(names))


def _append(journal, record: dict, path: Path) -> None:
    """Append one journal line durably (before the file it describes is replaced)."""
    try:
        journal.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        journal.flush()
        os.fsync(journal.fileno())
    except OSError as e:
        raise write_error(path, e) from e
    fsync_dir(path.parent)


def _read_journal(journal: Path) -> list[dict]:
    out = []
    for n, line in enumerate(journal.read_bytes().splitlines(), 1):
        try:
            rec = json.loads(line)
            if not isinstance(rec.get("path"), str) or not isinstance(rec.get("after"), str):
                raise ValueError("no path or after")
        except (ValueError, AttributeError) as e:
            logger.warning("%s line %d is not a journal record (%s); ignored", journal, n, e)
            continue
        out.append(rec)
    return out


def _rewrite_journal(journal: Path, records: list[dict]) -> None:
    if not records:
        journal.unlink(missing_ok=True)
        return
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_bytes(journal, text.encode("utf-8"))


def _undo_one(root: Path, state: Path, rec: dict) -> str:
    """ "restored", "unchanged", or the reason the file is left as it is."""
    path = root / rec["path"]
    if not inside(path, root.resolve()):
        return "the journal names a path outside the library; not touched"
    try:
        current = path.read_bytes() if path.is_file() else None
    except OSError as e:
        return f"cannot be read ({e.strerror or e}); left as it is"
    if current is None:
        if rec.get("before") is None:
            return "unchanged"  # a created NFO that is gone already
        return "it no longer exists; not recreated"
    sha = _sha(current)
    if sha == rec.get("before"):
        return "unchanged"
    if sha != rec["after"]:
        return "edited since embedgenre wrote it; left as it is (its backup stays in the journal)"
    if rec.get("before") is None:
        path.unlink()
        fsync_dir(path.parent)
        return "restored"
    backup = state / BACKUPS / str(rec.get("backup"))
    try:
        original = backup.read_bytes()
    except OSError:
        return f"its backup {backup.name} is missing; left as it is"
    if _sha(original) != rec["before"]:
        return f"its backup {backup.name} does not match the journal; left as it is"
    write_bytes(path, original, mode=os.stat(path).st_mode & 0o7777)
    return "restored"
