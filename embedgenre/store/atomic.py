"""Atomic, durable file writes: every writer in embedgenre goes through these.

A file is written to a hidden temporary name in its target folder, flushed and fsync'd, then
renamed over the target, and the folder is fsync'd so the rename itself survives a power cut.
A reader therefore sees the old file or the new one, never a mix, and a killed writer leaves
at most a ``.<name>.*.tmp`` file that the next write of the folder's owner removes.

Errors of the file system (read-only, disk full, no permission) become one
:class:`~embedgenre.errors.WriteError` naming the path and the fix, and leave the target as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.errors import WriteError

TMP_SUFFIX = ".tmp"

_FIXES = {
    errno.ENOSPC: "the disk is full: free some space and run the command again",
    errno.EDQUOT: "the disk quota is exhausted: free some space and run the command again",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "permission denied: choose a location you can write to",
    errno.EPERM: "permission denied: choose a location you can write to",
}


def write_error(path: Path, e: OSError) -> WriteError:
    """A WriteError for ``e`` raised while writing ``path``, with the fix for its cause."""
    fix = _FIXES.get(e.errno, "check the path and that its folder can be written")
    return WriteError(f"cannot write {path}: {e.strerror or e}; {fix}. Nothing was changed.")


def fsync_dir(directory: Path) -> None:
    """Make the renames done in ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` durably, with
    permission bits ``mode`` when given (else those of a new private file)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise write_error(path, e) from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically and durably; ``mode``: the permission bits to give
    it (e.g. those of the file it replaces, which a user's media server must still read)."""
    with _replacing(Path(path), mode) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_bytes(path, (json.dumps(obj, indent=indent) + "\n").encode("utf-8"))


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` without pickles, atomically (streamed to the file: no copy in memory)."""
    with _replacing(Path(path)) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


@contextmanager
def npy_memmap(path: str | Path, shape: tuple[int, ...], dtype) -> Iterator[np.ndarray]:
    """A writable memory map of a new ``.npy`` file of ``shape`` and ``dtype``, filled by the
    caller block by block (nothing of it need be in memory at once); it replaces ``path``
    atomically when the block ends cleanly, and is removed otherwise."""
    with _replacing(Path(path)) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=shape)
        try:
            yield out
            out.flush()
        finally:
            del out


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` of plain arrays (object arrays refused), atomically."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only plain arrays are saved")
    with _replacing(Path(path)) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically (the copy appears whole or not at all)."""
    with _replacing(Path(dst)) as tmp:
        shutil.copyfile(src, tmp)


@contextmanager
def open_for_write(path: str | Path, mode: str = "w", **kw) -> Iterator[Any]:
    """A file object whose content replaces ``path`` atomically when the block ends cleanly."""
    with _replacing(Path(path)) as tmp, open(tmp, mode, **kw) as f:
        yield f


def publish(tmp: str | Path, path: str | Path) -> None:
    """Durably rename ``tmp`` (a finished file another library wrote) over ``path``."""
    tmp, path = Path(tmp), Path(path)
    try:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        raise write_error(path, e) from e


def remove_stale_tmp(directory: Path) -> None:
    """Remove temporary files a killed writer left in ``directory``."""
    for f in Path(directory).glob(f".*{TMP_SUFFIX}"):
        if f.is_file():
            f.unlink(missing_ok=True)
