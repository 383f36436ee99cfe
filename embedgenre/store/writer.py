"""Writing an index directory: one writer at a time, numbered generations, commit, clean-up.

A writer holds the index's lock (:class:`~embedgenre.store.lock.WriterLock`) for as long as it
writes. Each data file it writes carries a generation number that no earlier run used
(``items-<g>.parquet``, ``embeddings/<key>-<g>/``, ``heads/<name>-<g>/``, ``skipped-<g>.json``),
so it never overwrites a file that a committed manifest, or a reader, may still use. Replacing
``manifest.json`` is the commit: before it, readers see the previous generation; after it, the
new one. When the writer is done it removes the files that neither the last committed manifest
nor the one it started from names (readers still on that one keep their memory maps), and
temporary files of killed runs.

A run that fails removes the files of the generation it did not commit (a full disk is left as
the run found it); what ``.partial/`` holds is kept for the next run to resume from.

Encoding workers may write chunk files into ``.partial/`` concurrently; the commit step that
publishes them is the one writer.

A writer opened with ``allow_read_only`` on an index it cannot write at all (a read-only copy or
mount) reads it as any reader does, without the lock, and fails only when it has something to
write (:meth:`IndexWriter.writable`): an unchanged re-run of ``index`` on such a copy succeeds.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from embedgenre.errors import IndexMismatchError, IndexStoreError, ReadOnlyError
from embedgenre.store import atomic
from embedgenre.store.lock import HOLDER_FILE, LOCK_FILE, WriterLock
from embedgenre.store.reader import INDEX_PREFIXES, is_index_entry, now_iso, read_manifest
from embedgenre.store.schema import MANIFEST, Manifest

logger = logging.getLogger(__name__)

_GEN_RE = re.compile(r"-(\d+)(?:\.[a-z]+)?$")
PARTIAL = ".partial"


def is_index_in_progress(path: Path) -> bool:
    """True when ``path`` holds only what an index writer makes (a first run killed early)."""
    return all(is_index_entry(p.name) for p in path.iterdir())


class IndexWriter:
    """The one writer of an index directory (a context manager).

    ``wait``: seconds to wait for another writer (0 refuses at once, None waits for ever).
    ``new``: allow creating the index (the folder may not exist, or hold only a killed first
    run's files). ``allow_read_only``: an existing index that takes no file (read-only file
    system, no permission) is opened without the lock, for a run that may find nothing to write;
    :meth:`writable` then refuses any write.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        wait: float | None = 0,
        new: bool = False,
        command: str | None = None,
        allow_read_only: bool = False,
    ):
        self.path = Path(path)
        self.new = new
        self.allow_read_only = allow_read_only
        self._lock = WriterLock(self.path, wait=wait, command=command)
        self.start: Manifest | None = None  # the generation current when the writer began
        self.current: Manifest | None = None
        self.read_only: str | None = None  # why the index cannot be written
        self._next = 0

    def __enter__(self) -> IndexWriter:
        if self.path.exists() and not self.path.is_dir():
            raise IndexStoreError(f"{self.path} is a file, not an index directory.")
        if not (self.path / MANIFEST).exists():
            if not self.new:
                read_manifest(self.path)  # raises with the right message
            if self.path.exists() and not is_index_in_progress(self.path):
                raise IndexMismatchError(
                    f"{self.path} exists and is not an embedgenre index;",
                    "choose a new folder, or empty this one.",
                    param="out",
                )
        try:
            self._lock.__enter__()
        except ReadOnlyError as e:
            if not (self.allow_read_only and (self.path / MANIFEST).exists()):
                raise
            self.read_only = getattr(e.__cause__, "strerror", None) or str(e)
            logger.debug("%s takes no file (%s); reading it without the lock", self.path, e)
        try:
            if (self.path / MANIFEST).exists():
                self.start = self.current = read_manifest(self.path)
            self._next = max(self._generation_on_disk(), self.current_generation) + 1
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.read_only is not None:
            return
        try:
            if exc_type is None:
                self.collect_garbage()
            elif issubclass(exc_type, Exception):  # not on a kill or ^C: the next run cleans up
                try:
                    self.collect_garbage()
                except Exception as e:  # the run's own error is the one to report
                    logger.debug("could not remove the failed run's files: %s", e)
        finally:
            self._lock.__exit__(exc_type, exc, tb)

    def writable(self, what: str) -> None:
        """Refuse, naming ``what`` the run has to write, when the index cannot be written."""
        if self.read_only is not None:
            raise ReadOnlyError(
                f"index {self.path} cannot be written ({self.read_only}) and this run has "
                f"something to write: {what}. Make the index writable, or index into a writable "
                "copy of it. Nothing was changed."
            )

    @property
    def current_generation(self) -> int:
        return self.current.generation if self.current else 0

    @property
    def generation(self) -> int:
        """The generation number this writer's files and next commit use."""
        return self._next

    def _generation_on_disk(self) -> int:
        """The highest generation any file or folder of the index is numbered with (killed
        runs included), so new files never reuse a number."""
        best = 0
        for folder in (self.path, self.path / "embeddings", self.path / "heads"):
            if folder.is_dir():
                for p in folder.iterdir():
                    m = _GEN_RE.search(p.name)
                    if m:
                        best = max(best, int(m.group(1)))
        return best

    def commit(self, manifest: Manifest) -> Manifest:
        """Make ``manifest`` the index's current generation (the manifest rename is atomic)."""
        self.writable("a new generation")
        manifest = manifest.evolve(generation=self._next, updated=now_iso())
        atomic.write_json(self.path / MANIFEST, manifest.to_dict())
        self.current = manifest
        self._next += 1
        return manifest

    def collect_garbage(self) -> list[str]:
        """Remove what no kept generation names; returns the removed paths (relative)."""
        keep: set[str] = set()
        for m in (self.current, self.start):
            if m is not None:
                keep |= m.files()
        removed = []
        candidates = [p for p in self.path.iterdir() if p.name.startswith(INDEX_PREFIXES[:2])]
        for sub in ("embeddings", "heads"):
            if (self.path / sub).is_dir():
                candidates += list((self.path / sub).iterdir())
        for p in candidates:
            rel = p.relative_to(self.path).as_posix()
            if rel in keep or p.name in (LOCK_FILE, HOLDER_FILE):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(rel)
        for folder in (self.path, self.path / "embeddings", self.path / "heads"):
            if folder.is_dir():
                atomic.remove_stale_tmp(folder)
        if removed:
            logger.debug("removed %d unreferenced file(s): %s", len(removed), ", ".join(removed))
        return removed

    # -- the folders a generation writes into ------------------------------------------------

    def new_dir(self, rel: str) -> Path:
        """A fresh folder ``rel`` inside the index (a killed run's leftover is cleared)."""
        self.writable(rel)
        d = self.path / rel
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def partial_dir(self, key: str) -> Path:
        return self.path / PARTIAL / key

    def clear_partial(self, key: str) -> None:
        if self.read_only is not None:  # not ours to clear: another writer may be using it
            return
        shutil.rmtree(self.partial_dir(key), ignore_errors=True)
        try:
            (self.path / PARTIAL).rmdir()
        except OSError:
            pass
