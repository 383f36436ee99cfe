"""Atomic, durable file writes: every writer in embedgenre goes through these.

A file is written to a hidden temporary name in its target folder, flushed and fsync'd, then
renamed over the target, and the folder is fsync'd so the rename itself survives a power cut.
A reader therefore sees the old file or the new one, never a mix, and a killed writer leaves
at most a ``.<name>.*.tmp`` file that the next write of the folder's owner removes.

Space is reserved before a file is filled (``posix_fallocate`` where its size is known), so a
full disk is an error before the first byte, never a crash in the middle of a memory-mapped
write. Errors of the file system (read-only, disk full, no permission) become one
:class:`~embedgenre.errors.WriteError` naming the path, the space needed and the fix, and leave
the target as it was.

Files are created with the process umask (``0o666 & ~umask``), like any file a user's program
writes, so a shared group or a web server can read reports, pages and indexes when the umask says
so.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.errors import ReadOnlyError, WriteError

TMP_SUFFIX = ".tmp"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_ZEROS = 1 << 20  # bytes written at a time where a file system cannot reserve space

_FIXES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "permission denied: choose a location you can write to",
    errno.EPERM: "permission denied: choose a location you can write to",
}


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``"512 B"``, ``"3.4 MB"``, ``"1.2 GB"`` (powers of 1000)."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use in ``directory``'s file system (None: unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write_error(path: Path, e: OSError, needed: int | None = None) -> WriteError:
    """A WriteError for ``e`` raised while writing ``path``, with the fix for its cause (a
    :class:`~embedgenre.errors.ReadOnlyError` where the folder takes no file at all).

    ``needed``: the bytes the file needs, when known; a full disk is reported with the space
    needed and the space free in ``path``'s folder."""
    path = Path(path)
    if e.errno in _NO_SPACE:
        free = free_bytes(path.parent)
        if needed:
            space = f"{path.name} needs {format_bytes(needed)} in {path.parent}"
        else:
            space = f"no room for {path.name} in {path.parent}"
        if free is not None:
            space += f", {format_bytes(free)} free"
        fix = f"{_FIXES[e.errno]} ({space}): free some space and run the command again"
    else:
        fix = _FIXES.get(e.errno, "check the path and that its folder can be written")
    kind = ReadOnlyError if e.errno in _READ_ONLY else WriteError
    return kind(f"cannot write {path}: {e.strerror or e}; {fix}. Nothing was changed.")


def check_space(path: str | Path, needed: int) -> None:
    """Refuse (one WriteError) to write ``needed`` bytes as ``path`` where its file system has
    less free: for files a library writes itself (memory-mapped), where no space can be
    reserved beforehand."""
    path = Path(path)
    free = free_bytes(path.parent)
    if free is not None and needed > free:
        raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), needed)


def reserve(fd: int, start: int, size: int) -> None:
    """Allocate bytes ``start:start + size`` of the open file ``fd`` on disk, so that filling
    them (through a memory map too) cannot fail for want of space; raises OSError (ENOSPC)
    at once when the space is not there. Where the file system cannot reserve, the range is
    written with zeros instead (the same guarantee, at the cost of one write)."""
    if size <= 0:
        return
    try:
        os.posix_fallocate(fd, start, size)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    zeros = bytes(min(size, _ZEROS))
    at, end = start, start + size
    while at < end:
        at += os.pwrite(fd, zeros[: min(len(zeros), end - at)], at)


def new_temp(directory: str | Path, prefix: str, suffix: str = TMP_SUFFIX) -> Path:
    """Create an empty file ``<prefix><random><suffix>`` in ``directory`` (mode
    ``0o666 & ~umask``, never an existing file) and return its path."""
    directory = Path(directory)
    while True:
        tmp = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


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


class _Temp:
    """The temporary file a :func:`_replacing` block fills; ``size``: the bytes it will hold,
    when known (the space is then reserved before the first write, and named if missing)."""

    def __init__(self, path: Path, size: int | None = None):
        self.path = path
        self.size = size

    def open(self, mode: str = "wb", **kw):
        """The temporary file opened for writing, with ``self.size`` bytes reserved."""
        f = open(self.path, mode, **kw)
        try:
            if self.size:
                reserve(f.fileno(), 0, self.size)
        except BaseException:
            f.close()
            raise
        return f


@contextmanager
def _replacing(path: Path, size: int | None = None, mode: int | None = None) -> Iterator[_Temp]:
    """Yield the temporary file beside ``path``; on success it replaces ``path`` durably, with
    permission bits ``mode`` when given (else those of a new file: ``0o666 & ~umask``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _Temp(new_temp(path.parent, f".{path.name}."), size)
    except OSError as e:
        raise write_error(path, e, size) from e
    try:
        yield tmp
        with open(tmp.path, "rb+") as f:
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp.path, mode)
        os.replace(tmp.path, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.path.unlink(missing_ok=True)
        raise write_error(path, e, size) from e
    except BaseException:
        tmp.path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically and durably; ``mode``: the permission bits to give
    it (e.g. those of the file it replaces, which a user's media server must still read)."""
    with _replacing(Path(path), len(data), mode) as tmp, tmp.open() as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_bytes(path, (json.dumps(obj, indent=indent) + "\n").encode("utf-8"))


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` without pickles, atomically (streamed to the file: no copy in memory)."""
    array = np.asanyarray(array)
    with _replacing(Path(path), _npy_size(array.shape, array.dtype)) as tmp, tmp.open() as f:
        np.save(f, array, allow_pickle=False)
        f.truncate()  # the header's size was estimated: the file ends where np.save stopped


def _npy_size(shape: tuple[int, ...], dtype) -> int:
    """Bytes of the ``.npy`` file of an array of ``shape`` and ``dtype``, its header estimated
    (at most a few hundred bytes; a structured dtype may need more, written as it comes)."""
    return 256 + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


@contextmanager
def npy_memmap(path: str | Path, shape: tuple[int, ...], dtype) -> Iterator[np.ndarray]:
    """A writable memory map of a new ``.npy`` file of ``shape`` and ``dtype``, filled by the
    caller block by block (nothing of it need be in memory at once); it replaces ``path``
    atomically when the block ends cleanly, and is removed otherwise. The file's space is
    reserved before the map is returned: a full disk is a WriteError here, not a bus error when
    a page of the map is first written."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with _replacing(Path(path), nbytes) as tmp:
        out = np.lib.format.open_memmap(tmp.path, mode="w+", dtype=dtype, shape=shape)
        try:
            with open(tmp.path, "rb+") as f:
                reserve(f.fileno(), out.offset, nbytes)
            yield out
            out.flush()
        finally:
            del out


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` of plain arrays (object arrays refused), atomically."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only plain arrays are saved")
    with _replacing(Path(path)) as tmp, tmp.open() as f:
        np.savez(f, **arrays)


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically (the copy appears whole or not at all)."""
    try:
        size = os.stat(src).st_size
    except OSError:
        size = None  # opening it says why
    with _replacing(Path(dst), size) as tmp, tmp.open() as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f)


@contextmanager
def open_for_write(path: str | Path, mode: str = "w", **kw) -> Iterator[Any]:
    """A file object whose content replaces ``path`` atomically when the block ends cleanly."""
    with _replacing(Path(path)) as tmp, tmp.open(mode, **kw) as f:
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
