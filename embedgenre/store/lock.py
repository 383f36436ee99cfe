"""One writer at a time: an exclusive lock on ``<index>/.lock`` that names its holder.

The lock is an OS file lock (``filelock``, ``flock`` on POSIX): the kernel releases it when its
process dies, however it dies, so a lock left by a killed writer is taken over by the next one
without guessing from pids. Beside it ``.lock.json`` says who holds it (pid, host, start time and
command) so a refused second writer can tell the user whom it waits for. Readers never take it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from embedgenre.errors import IndexLockedError, IndexStoreError
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"


def holder(path: Path) -> dict | None:
    """Who holds (or last held) the lock of the index at ``path``, if it says."""
    try:
        doc = json.loads((Path(path) / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


class WriterLock:
    """Context manager holding the index's writer lock.

    ``wait``: seconds to wait for another writer (0: refuse at once; None: wait for ever).
    """

    def __init__(self, path: str | Path, wait: float | None = 0, command: str | None = None):
        self.path = Path(path)
        self.wait = wait
        self.command = command or " ".join(os.path.basename(a) for a in sys.argv[:2])
        self._lock: FileLock | None = None

    def __enter__(self) -> WriterLock:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise atomic.write_error(self.path, e) from e
        if not self.path.is_dir():
            raise IndexStoreError(
                f"{self.path} is not a directory;", "choose another folder.", param="out"
            )
        lock = FileLock(str(self.path / LOCK_FILE))
        timeout = -1 if self.wait is None else max(0.0, float(self.wait))
        try:
            lock.acquire(timeout=timeout, poll_interval=0.2)
        except Timeout:
            raise IndexLockedError(
                self._busy_message(),
                "Fix: wait for it to finish, or ask to wait for it (queue behind it).",
                param="wait",
            ) from None
        except OSError as e:
            raise atomic.write_error(self.path / LOCK_FILE, e) from e
        self._lock = lock
        try:
            atomic.write_json(
                self.path / HOLDER_FILE,
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": self.command,
                },
            )
        except BaseException:
            lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _busy_message(self) -> str:
        who = holder(self.path) or {}
        desc = (
            f"pid {who.get('pid', '?')} on {who.get('host', '?')}, started "
            f"{who.get('started', '?')} ({who.get('command', 'unknown command')})"
        )
        waited = "" if not self.wait else f" after waiting {self.wait:g} s"
        return f"index {self.path} is being written by another process: {desc}{waited}."
