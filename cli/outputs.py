"""Output files of the commands: checked before the work starts, wrapped while written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from embedgenre.errors import OutputPathError, WriteError
from embedgenre.evaluate.report import check_output_dir


def check_output_file(path: Path, option: str, example: str) -> Path:
    """Raise OutputPathError unless a file can be written at ``path``: it is not a folder, and
    its folder exists or can be made and takes a new file. Creates nothing."""
    if path.is_dir():
        raise OutputPathError(
            f"{option} {path} is a folder; give a file name such as {path / example}."
        )
    check_output_dir(path.parent, f"{option} {path}")
    return path


@contextmanager
def writing(path: Path, option: str, partial: bool = True) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (disk full, no permission) into OutputPathError;
    with ``partial``, remove the half-written file."""
    try:
        yield
    except WriteError as e:  # an atomic write: the target was left as it was
        raise OutputPathError(f"{option}: {e}") from e
    except OSError as e:
        if partial and path.is_file():
            with suppress(OSError):
                path.unlink()
        raise OutputPathError(
            f"{option} {path}: writing failed ({e.strerror or e}); free some disk space or give "
            f"{option} a path you can write to."
        ) from e
