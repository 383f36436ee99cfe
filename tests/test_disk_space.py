"""Writing on a full, read-only or shared file system.

A full disk is one WriteError naming the folder and the space needed (never a bus error from a
memory map into a sparse file), with no temporary file left and the committed generation as it
was; written files follow the process umask; an unchanged ``index`` of a read-only copy
succeeds without its lock. The file-system cases mount a small tmpfs (root only; skipped with
the reason elsewhere) and always unmount it.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _catalogs import FIELDS, copy_fixture, make_catalog
from _fakes import Factory, build

from embedgenre.errors import ReadOnlyError, WriteError
from embedgenre.store import GenreIndex, atomic

FAKE_CLI = Path(__file__).parent / "_fake_cli.py"
ROW = 4096 * 4  # bytes of one vector of tests/_fake_cli.py's encoders


@contextlib.contextmanager
def tmpfs(where: Path, size: int):
    """A tmpfs of ``size`` bytes mounted at ``where`` for the block (skips where not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8); not available here")
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if got.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    try:
        yield where
    finally:
        gc.collect()  # memory maps of the index's files keep the mount busy
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(where)], check=True)  # detached once unused


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def fill(where: Path, leave: int = 0) -> Path:
    """Fill ``where``'s file system, leaving ``leave`` bytes (0: exactly full)."""
    filler = where / "filler"
    with open(filler, "ab", buffering=0) as f:
        if leave:
            st = os.statvfs(where)
            f.write(bytes(max(0, st.f_bavail * st.f_frsize - leave)))
            return filler
        with contextlib.suppress(OSError):
            while True:
                f.write(bytes(4096))
    return filler


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{atomic.TMP_SUFFIX}")]


def write_rows(root: Path, rows: list[dict]) -> None:
    make_catalog(root, [{k: r[k] for k in FIELDS} for r in rows])


@pytest.fixture()
def forty_movies(tmp_path, fixture_dir) -> tuple[Path, list[dict]]:
    """A catalog folder holding the posters of 40 fixture movies (movies.csv: written per test)."""
    root = tmp_path / "cat"
    return root, copy_fixture(fixture_dir, root, n=40)


def fake_index(catalog: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(FAKE_CLI), "index", str(catalog), "--out", str(out)]
        + ["--image-encoder", "fake:a", "--text-encoder", "fake:t"],
        capture_output=True,
        text=True,
        timeout=300,
    )


# ---------------------------------------------------------------------------- a full disk


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_index_on_a_full_disk_is_one_error_and_keeps_the_previous_generation(
    tmp_path, forty_movies
):
    cat, rows = forty_movies
    with tmpfs(tmp_path / "mnt", 4 << 20) as mnt:
        out = mnt / "idx"
        write_rows(cat, rows[:20])
        first = fake_index(cat, out)
        assert first.returncode == 0, first.stderr
        before = GenreIndex.open(out).manifest

        # room for the 20 new posters' chunk (~0.45 MB with thumbnails), not for the poster
        # set's 40-row vectors.npy after it (0.65 MB): the write that used to be a bus error
        write_rows(cat, rows)
        filler = fill(mnt, leave=20 * ROW + 300_000)
        res = fake_index(cat, out)

        assert res.returncode == 1, (res.returncode, res.stderr)
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        assert "disk is full" in errors[0] and "needs" in errors[0], errors[0]
        assert str(out / "embeddings") in errors[0]  # the folder it could not fill
        assert temp_files(mnt) == []
        # the committed generation opens as it was; the failed one left no set folder behind
        idx = GenreIndex.open(out)
        assert idx.manifest.generation == before.generation
        assert idx.ids == [r["imdb_id"] for r in rows[:20]]
        assert len(idx.get_set("poster").vectors) == 20
        assert sorted(p.name for p in (out / "embeddings").iterdir()) == sorted(
            Path(s.dir).name for s in before.sets
        )

        filler.unlink()  # with room again, the same command finishes the job
        again = fake_index(cat, out)
        assert again.returncode == 0, again.stderr
        assert GenreIndex.open(out).ids == [r["imdb_id"] for r in rows]


def _memmap_on_full_disk(path: Path) -> None:
    """Run in a child process: before space was reserved this was a bus error."""
    code = (
        "import sys\n"
        "from embedgenre.errors import WriteError\n"
        "from embedgenre.store import atomic\n"
        "try:\n"
        "    with atomic.npy_memmap(sys.argv[1], (64, 1024), 'float32') as out:\n"
        "        out[:] = 1.0\n"
        "except WriteError as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )


def test_atomic_helpers_on_a_full_disk_raise_one_write_error(tmp_path):
    with tmpfs(tmp_path / "mnt", 1 << 20) as mnt:
        target = mnt / "data" / "kept.bin"
        target.parent.mkdir()
        atomic.write_bytes(target, b"previous")
        src = tmp_path / "big.bin"
        src.write_bytes(bytes(300_000))
        fill(mnt)
        writes = {
            "write_bytes": lambda p: atomic.write_bytes(p, bytes(200_000)),
            "save_npy": lambda p: atomic.save_npy(p, np.ones((100, 512), np.float32)),
            "save_npz": lambda p: atomic.save_npz(p, a=np.ones((100, 512), np.float32)),
            "copy_file": lambda p: atomic.copy_file(src, p),
        }
        for name, write in writes.items():
            with pytest.raises(WriteError, match=r"disk is full \(.*data.*free\).*Nothing was"):
                write(target)
            assert target.read_bytes() == b"previous", name
            assert temp_files(mnt) == [], name
        with pytest.raises(WriteError, match=r"kept.bin needs 200.0 kB in .*data"):
            atomic.write_bytes(target, bytes(200_000))

        got = _memmap_on_full_disk(target)
        assert got.returncode == 3, (got.returncode, got.stderr[-2000:])
        assert "needs 262.1 kB in" in got.stdout and str(target.parent) in got.stdout
        assert target.read_bytes() == b"previous"
        assert temp_files(mnt) == []


def test_reserved_files_are_exactly_what_was_written(tmp_path):
    """Reserving space never leaves padding: each file has the size its content has."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic.save_npy(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)
    with open(tmp_path / "b.npy", "wb") as f:
        np.save(f, a)
    assert (tmp_path / "a.npy").stat().st_size == (tmp_path / "b.npy").stat().st_size
    ids = np.array(["tt0000001", "tt2"])
    atomic.save_npy(tmp_path / "ids.npy", ids)
    assert list(np.load(tmp_path / "ids.npy")) == list(ids)
    with atomic.npy_memmap(tmp_path / "m.npy", (3, 4), np.float32) as out:
        out[:] = a
    assert (tmp_path / "m.npy").stat().st_size == (tmp_path / "b.npy").stat().st_size
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), a)
    atomic.write_bytes(tmp_path / "c.bin", b"12345")
    assert (tmp_path / "c.bin").read_bytes() == b"12345"


def test_reserve_writes_zeros_where_the_file_system_cannot_allocate(tmp_path, monkeypatch):
    def unsupported(fd, start, size):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    with atomic.npy_memmap(tmp_path / "m.npy", (2, 3), np.float32) as out:
        out[:] = 7
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.full((2, 3), 7, np.float32))
    atomic.write_bytes(tmp_path / "x", b"abc")
    assert (tmp_path / "x").read_bytes() == b"abc"


# ---------------------------------------------------------------------------- the umask


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, mask, mode):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    out = tmp_path / "out"
    with umask(mask):
        atomic.write_bytes(out / "a.bin", b"data")
        atomic.write_json(out / "b.json", {"a": 1})
        atomic.save_npy(out / "c.npy", np.zeros(3))
        atomic.save_npz(out / "d.npz", a=np.zeros(3))
        atomic.copy_file(src, out / "e.bin")
        with atomic.npy_memmap(out / "f.npy", (2,), np.float32) as m:
            m[:] = 1
        with atomic.open_for_write(out / "g.txt") as f:
            f.write("text")
        temp = atomic.new_temp(out, ".h.", ".onnx")
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {name: mode for name in modes} and len(modes) == 8, modes
    assert temp.name.startswith(".h.") and temp.name.endswith(".onnx")


def test_index_files_follow_the_umask(small_catalog, tmp_path):
    root, _ = small_catalog
    out = tmp_path / "idx"
    with umask(0o022):
        build(root, out, Factory())
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert {p.relative_to(out).as_posix(): oct(p.stat().st_mode & 0o777) for p in files} == {
        p.relative_to(out).as_posix(): oct(0o644) for p in files
    }
    dirs = [p for p in out.rglob("*") if p.is_dir()]
    assert {oct(p.stat().st_mode & 0o777) for p in dirs} == {oct(0o755)}


# ---------------------------------------------------------------------------- read-only copies


def _cli_index(root: Path, out: Path, monkeypatch):
    from typer.testing import CliRunner

    import embedgenre.encoders as registry
    from embedgenre.cli.app import app

    monkeypatch.setattr(registry, "create_encoder", lambda name, **kw: Factory()(name))
    return CliRunner().invoke(app, ["index", str(root), "--out", str(out)])


def test_unchanged_index_of_a_read_only_copy_succeeds(small_catalog, tmp_path, monkeypatch):
    root, rows = small_catalog
    with tmpfs(tmp_path / "mnt", 8 << 20) as mnt:
        out = mnt / "idx"
        build(root, out, Factory())
        generation = GenreIndex.open(out).manifest.generation
        remount(mnt, "ro")

        res = _cli_index(root, out, monkeypatch)
        assert res.exit_code == 0, res.output
        assert "up to date" in res.output
        assert GenreIndex.open(out).manifest.generation == generation

        # with something to write, one error that says why, and the index as it was
        write_rows(root, rows[:-1])
        res = _cli_index(root, out, monkeypatch)
        assert res.exit_code == 1
        assert "cannot be written (Read-only file system)" in res.stderr
        assert "the catalog's items changed" in res.stderr or "changed" in res.stderr
        assert "Traceback" not in res.output
        assert len(GenreIndex.open(out).ids) == len(rows)


def test_unchanged_index_without_permission_needs_no_lock(small_catalog, tmp_path, monkeypatch):
    """Where the lock file cannot be created (EACCES: a folder of another user), an unchanged
    run reads the index as a reader does; one that has something to write is refused."""
    from embedgenre.store import lock

    root, rows = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())

    class Refused:
        def __init__(self, path):
            self.path = path

        def acquire(self, *a, **k):
            raise PermissionError(errno.EACCES, "Permission denied", self.path)

        def release(self):
            raise AssertionError("never acquired")

    monkeypatch.setattr(lock, "FileLock", Refused)
    summary = build(root, out, Factory())
    assert summary.up_to_date
    write_rows(root, rows[:-1])
    with pytest.raises(ReadOnlyError, match=r"cannot be written \(Permission denied\).*Nothing"):
        build(root, out, Factory())
    assert len(GenreIndex.open(out).ids) == len(rows)
