"""Containment: every path an index names must resolve inside the index directory.

An index may come from someone else, so its manifest is untrusted input: a relative path with
``..``, an absolute path, or a symbolic link that leads outside the index is refused rather than
followed. Head names are plain names, never paths.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from embedgenre.errors import IndexStoreError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def inside(root: Path, rel: str, what: str) -> Path:
    """``root / rel`` after checking that it stays inside ``root``, links resolved.

    ``rel`` must be a relative POSIX path without ``..``; ``what`` names the field in messages.
    """
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel:
        raise IndexStoreError(
            f"index {root}: {what} {rel!r} is not a relative path; the index is damaged or was "
            "tampered with. Rebuild it with `embedgenre index CATALOG --out NEW_DIR`."
        )
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or rel.startswith("~"):
        raise IndexStoreError(
            f"index {root}: {what} {rel!r} points outside the index (absolute or with '..'); "
            "an index names only its own files. Rebuild it with `embedgenre index`."
        )
    target = root / pure
    try:
        base = root.resolve()
        resolved = target.resolve()
        target.exists()  # raises for a name too long for the file system
    except (OSError, RuntimeError) as e:  # a link loop (RuntimeError before Python 3.13)
        raise IndexStoreError(
            f"index {root}: {what} {rel!r} cannot be followed ({e}); the index is damaged or was "
            "tampered with. Rebuild it with `embedgenre index CATALOG --out NEW_DIR`."
        ) from e
    if resolved != base and base not in resolved.parents:
        raise IndexStoreError(
            f"index {root}: {what} {rel!r} is a link that leads outside the index (to "
            f"{resolved}); refusing to follow it. Rebuild the index with `embedgenre index`."
        )
    return target


def check_name(name: str, what: str = "head name") -> str:
    """``name`` if it is a plain name (letters, digits, '.', '_', '-'; at most 64), else raise."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise IndexStoreError(
            f"{what} {name!r} is not a plain name: use letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit), never a path."
        )
    return name
