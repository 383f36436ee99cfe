"""The index store: one writer, readers across generations, containment, validation, migration,
hostile poster files, and a run killed at every commit step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _catalogs import make_catalog
from _fakes import Factory, build
from PIL import Image
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.errors import IndexLockedError, IndexStoreError, PredictorError, WriteError
from embedgenre.heads import load_head, train_head
from embedgenre.predictors import HeadSpec
from embedgenre.store import GenreIndex, atomic
from embedgenre.store.lock import WriterLock
from embedgenre.store.schema import FORMAT_VERSION

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

TESTS = Path(__file__).parent
V1_INDEX = TESTS / "data" / "index_v1"


def synthetic_catalog(root: Path, n: int = 16) -> Path:
    """The catalog the checked-in version-1 index was built from (same ids, posters, plots)."""
    (root / "posters").mkdir(parents=True)
    rows = []
    genres = ["Drama", "Comedy", "Horror"]
    for i in range(n):
        iid = f"tt90{i:05d}"
        Image.new("RGB", (20, 30), (i * 15, 100, 200 - i * 10)).save(
            root / "posters" / f"{iid}.jpg"
        )
        rows.append(
            {
                "imdb_id": iid,
                "title": f"Movie {i}",
                "genres": genres[i % 3] + ("|Drama" if i % 3 else ""),
                "plot": f"A story number {i} about {genres[i % 3].lower()}",
                "poster": f"posters/{iid}.jpg",
            }
        )
    make_catalog(root, rows)
    return root


@pytest.fixture()
def index_dir(tmp_path) -> tuple[Path, Path]:
    root = synthetic_catalog(tmp_path / "cat")
    out = tmp_path / "idx"
    build(root, out, Factory())
    return root, out


def _files(path: Path) -> dict[str, float]:
    return {
        p.relative_to(path).as_posix(): p.stat().st_mtime_ns
        for p in path.rglob("*")
        if not p.name.startswith(".lock")
    }


# ---------------------------------------------------------------------------- one writer


def hold_lock(out: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes the index's writer lock and holds it for ``seconds``
    (released when it exits, or when it is killed); returns once it holds the lock."""
    script = (
        "import time\nfrom embedgenre.store.lock import WriterLock\n"
        f"with WriterLock({str(out)!r}):\n    print('held', flush=True); time.sleep({seconds})"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_writer_is_refused_with_the_holder_named(index_dir):
    root, out = index_dir
    with WriterLock(out, command="embedgenre index"):
        with pytest.raises(IndexLockedError, match=rf"pid {os.getpid()} on .*embedgenre index"):
            build(root, out, Factory())
        result = CliRunner().invoke(app, ["index", str(root), "--out", str(out)])
        assert result.exit_code == 1
        assert "being written by another process" in result.output
        assert "--wait" in result.output and "Traceback" not in result.output
    GenreIndex.open(out)  # nothing was harmed


def test_wait_queues_behind_the_writer(index_dir):
    root, out = index_dir
    holder = hold_lock(out, seconds=1.5)
    with pytest.raises(IndexLockedError):
        build(root, out, Factory(), wait=0.2)
    build(root, out, Factory(), wait=30)  # returns once the holder is done
    assert holder.wait(10) == 0


def test_lock_of_a_killed_writer_is_taken_over(index_dir):
    root, out = index_dir
    holder = hold_lock(out, seconds=60)
    holder.kill()
    holder.wait()
    assert json.loads((out / ".lock.json").read_text())["pid"] == holder.pid  # stale record
    build(root, out, Factory())  # the kernel released the lock with the process


def test_train_holds_the_lock_too(index_dir):
    _, out = index_dir
    idx = GenreIndex.open(out)
    with WriterLock(out), pytest.raises(IndexLockedError):
        train_head(idx, HeadSpec("linear", "poster", folds=None), name="p")


# ---------------------------------------------------------------------------- generations


def test_unchanged_rerun_writes_nothing(index_dir):
    root, out = index_dir
    build(root, out, Factory())  # settle: the previous generation is collected
    before = _files(out)
    f = Factory()
    build(root, out, f)
    assert f.made == {}
    assert _files(out) == before


def test_reader_keeps_answering_while_writer_commits_two_generations(index_dir):
    root, out = index_dir
    reader = GenreIndex.open(out)
    first_gen = reader.generation
    poster = reader.get_set("poster")
    expected = np.array(poster.vectors)
    query = expected[3]
    _, want = poster.search(query[None], 5)
    rows = list(csv_rows(root))
    for step in (1, 2):  # each adds a movie and changes a poster: a new generation each time
        iid = f"tt95{step:05d}"
        Image.new("RGB", (20, 30), (9 * step, 9, 9)).save(root / "posters" / f"{iid}.jpg")
        rows.append({**rows[0], "imdb_id": iid, "poster": f"posters/{iid}.jpg"})
        make_catalog(root, rows)
        build(root, out, Factory())
    assert GenreIndex.open(out).generation > first_gen + 1
    assert not (out / reader.manifest.items_file).exists()  # its files are collected ...
    _, got = reader.get_set("poster").search(query[None], 5)  # ... and it still answers
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(reader.get_set("poster").vectors), expected)


def csv_rows(root: Path):
    import csv

    with open(root / "movies.csv", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def test_index_of_version_1_opens_and_is_upgraded(tmp_path):
    out = tmp_path / "v1"
    shutil.copytree(V1_INDEX, out)
    assert json.loads((out / "manifest.json").read_text())["format_version"] == 1
    idx = GenreIndex.open(out)
    assert len(idx.ids) == 16 and {s.modality for s in idx.sets} == {"poster", "plot"}
    assert [h.name for h in idx.heads] == ["old-linear"]
    head = load_head(idx, "old-linear")
    assert head.method == "linear"
    root = synthetic_catalog(tmp_path / "cat")
    f = Factory()
    build(root, out, f)  # same items: nothing re-encoded, thumbnails added, new format written
    assert f.made == {}
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION
    new = GenreIndex.open(out)
    assert new.thumbnail("tt9000001") is not None
    np.testing.assert_array_equal(new.get_set("poster").vectors, idx.get_set("poster").vectors)
    assert load_head(new, "old-linear").name == "old-linear"


# ---------------------------------------------------------------------------- containment


@pytest.mark.parametrize(
    "field, value",
    [
        ("items_file", "../outside.parquet"),
        ("items_file", "/etc/passwd"),
        ("set_dir", "../../elsewhere"),
        ("set_dir", "/tmp"),
        ("head_dir", "../x"),
    ],
)
def test_manifest_paths_outside_the_index_are_refused(index_dir, field, value):
    _, out = index_dir
    doc = json.loads((out / "manifest.json").read_text())
    if field == "items_file":
        doc["items_file"] = value
    elif field == "set_dir":
        doc["sets"][0]["dir"] = value
    else:
        doc["heads"] = [{"name": "h", "dir": value}]
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IndexStoreError, match="outside the index"):
        GenreIndex.open(out)


def test_a_link_leading_outside_is_refused(index_dir, tmp_path):
    _, out = index_dir
    doc = json.loads((out / "manifest.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(out / doc["sets"][0]["dir"], elsewhere)
    (out / "embeddings" / "link").symlink_to(elsewhere)
    doc["sets"][0]["dir"] = "embeddings/link"
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IndexStoreError, match="link that leads outside"):
        GenreIndex.open(out)


@pytest.mark.parametrize("name", ["../../x", "/etc", "a/b", "..", ""])
def test_heads_are_asked_for_by_name_only(index_dir, name):
    _, out = index_dir
    with pytest.raises(PredictorError, match="not a plain name"):
        load_head(GenreIndex.open(out), name)
    result = CliRunner().invoke(
        app, ["predict", "--plot", "a story", "--index", str(out), "--head", name]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_html_sheet_shows_stored_thumbnails_not_the_item_table_paths(index_dir, tmp_path):
    _, out = index_dir
    idx = GenreIndex.open(out)
    secret = tmp_path / "private.png"
    Image.new("RGB", (30, 30), (1, 2, 3)).save(secret)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(out / idx.manifest.items_file)
    table = table.set_column(
        table.column_names.index("poster"), "poster", pa.array([str(secret)] * len(table))
    )
    pq.write_table(table, out / idx.manifest.items_file)  # a tampered item table
    page = tmp_path / "sheet.html"
    result = CliRunner().invoke(
        app, ["similar", "--id", "tt9000001", "--index", str(out), "-k", "3", "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    html = page.read_text()
    import base64

    uris = [u.split('"')[0] for u in html.split("data:image/jpeg;base64,")[1:]]
    assert len(uris) == 4  # the query and three neighbours, each from the index
    stored = {
        base64.b64encode(GenreIndex.open(out).thumbnail(f"tt90{i:05d}")).decode() for i in range(16)
    }
    assert set(uris) <= stored


# ---------------------------------------------------------------------------- validation


def _corrupt(out: Path, what: str) -> None:
    doc = json.loads((out / "manifest.json").read_text())
    d = out / doc["sets"][0]["dir"]
    if what == "manifest is a list":
        (out / "manifest.json").write_text("[1, 2]")
    elif what == "bad dim":
        doc["sets"][0]["encoder"]["dim"] = "eight"
        (out / "manifest.json").write_text(json.dumps(doc))
    elif what == "other dim":
        doc["sets"][0]["encoder"]["dim"] = 16
        (out / "manifest.json").write_text(json.dumps(doc))
    elif what == "items not parquet":
        (out / doc["items_file"]).write_text("id,genres\n")
    elif what == "parquet without genres":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": ["a"]}), out / doc["items_file"])
    elif what == "fewer rows than ids":
        v = np.load(d / "vectors.npy")
        np.save(d / "vectors.npy", v[:-1])
    elif what == "truncated vectors":
        (d / "vectors.npy").write_bytes((d / "vectors.npy").read_bytes()[:200])
    elif what == "1-D vectors":
        np.save(d / "vectors.npy", np.zeros(8, np.float32))
    elif what == "NaN":
        v = np.load(d / "vectors.npy")
        v[2, 1] = np.nan
        np.save(d / "vectors.npy", v)
    elif what == "pickled ids":
        np.save(d / "ids.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    elif what == "newer format":
        doc["format_version"] = FORMAT_VERSION + 1
        (out / "manifest.json").write_text(json.dumps(doc))


CORRUPTIONS = [
    "manifest is a list",
    "bad dim",
    "other dim",
    "items not parquet",
    "parquet without genres",
    "fewer rows than ids",
    "truncated vectors",
    "1-D vectors",
    "NaN",
    "pickled ids",
    "newer format",
]


@pytest.mark.parametrize("what", CORRUPTIONS)
def test_damaged_index_is_refused_with_one_clear_message(index_dir, what):
    _, out = index_dir
    _corrupt(out, what)
    with pytest.raises(IndexStoreError, match=r"index .*(damaged|newer|JSON object)"):
        GenreIndex.open(out)
    for args in (["info", str(out)], ["similar", "--id", "tt9000001", "--index", str(out)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (what, result.output)
        assert "Traceback" not in result.output and "error:" in result.output


@pytest.mark.parametrize("what", ["fewer rows than ids", "NaN", "truncated vectors"])
def test_rerunning_index_repairs_a_damaged_set(index_dir, what):
    root, out = index_dir
    _corrupt(out, what)
    build(root, out, Factory())
    idx = GenreIndex.open(out)
    assert len(idx.get_set("poster").rows) == 16


def test_read_only_target_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(WriteError, match="disk is full.*Nothing was changed"):
        atomic.write_bytes(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_new_index_killed_before_its_first_commit_is_resumed(tmp_path):
    root = synthetic_catalog(tmp_path / "cat")
    out = tmp_path / "idx"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / ".partial").mkdir()
    build(root, out, Factory())
    assert len(GenreIndex.open(out).ids) == 16


def test_a_foreign_folder_is_still_refused(tmp_path):
    root = synthetic_catalog(tmp_path / "cat")
    out = tmp_path / "idx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(IndexStoreError, match="not an embedgenre index"):
        build(root, out, Factory())
    assert (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- hostile posters


def test_hostile_poster_files_are_refused_unread(tmp_path):
    root = synthetic_catalog(tmp_path / "cat", n=6)
    p = root / "posters"
    (p / "tt9000000.jpg").unlink()
    os.mkfifo(p / "tt9000000.jpg")  # reading it would block for ever
    (p / "tt9000001.jpg").unlink()
    (p / "tt9000001.jpg").symlink_to("/dev/zero")  # endless
    with open(p / "tt9000002.jpg", "wb") as f:  # 1 GB sparse: would be hashed in full
        f.truncate(1 << 30)
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    (p / "tt9000003.jpg").unlink()
    (p / "tt9000003.jpg").symlink_to(secret)  # not an image: never hashed
    out = tmp_path / "idx"
    summary = build(root, out, Factory())
    reasons = {r.id: r.reason for r in summary.skipped}
    assert "not a regular file" in reasons["tt9000000"]
    assert "not a regular file" in reasons["tt9000001"]
    assert "over the" in reasons["tt9000002"]
    assert "not an image" in reasons["tt9000003"]
    import hashlib

    digest = hashlib.sha1(secret.read_bytes()).hexdigest()
    assert not any(
        digest in p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()
    )
    assert len(GenreIndex.open(out).get_set("poster").rows) == 2


# ---------------------------------------------------------------------------- kill at every step


def test_a_run_killed_at_every_commit_step_resumes(tmp_path):
    """SIGKILL at each rename/replace/fsync of a small run; a plain re-run must finish with the
    same vectors, skip list and thumbnails as an uninterrupted run (see _kill_harness.py)."""
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_kill_harness.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    assert report["steps"] >= 40
    assert report["resumed"] == report["steps"]


def test_read_only_index_is_one_clear_error(index_dir, monkeypatch):
    import errno

    from filelock import FileLock

    root, out = index_dir

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(FileLock, "acquire", read_only)
    result = CliRunner().invoke(app, ["index", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output  # nothing to write: no lock needed
    assert "up to date" in result.output
    csv_path = root / "movies.csv"
    csv_path.write_text("".join(csv_path.read_text().splitlines(keepends=True)[:-1]))
    result = CliRunner().invoke(app, ["index", str(root), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot be written (Read-only file system)" in result.output
    assert "Make the index writable" in result.output
    monkeypatch.undo()
    GenreIndex.open(out)


def test_a_trained_faiss_index_is_parsed_only_when_its_digest_matches(tmp_path, monkeypatch):
    from embedgenre import ann

    monkeypatch.setattr(ann.kinds, "FLAT_MAX_ROWS", 1)  # a trained (approximate) index at any size
    root = synthetic_catalog(tmp_path / "cat", n=40)
    out = tmp_path / "idx"
    build(root, out, Factory())
    monkeypatch.undo()
    entry = GenreIndex.open(out).manifest.sets[0]
    assert entry.faiss["kind"].startswith("ivf_sq8") and len(entry.faiss["sha256"]) == 64
    loaded = []
    load = ann.load_faiss_index
    monkeypatch.setattr(
        ann.io, "load_faiss_index", lambda p, **kw: loaded.append(p) or load(p, **kw)
    )
    s = GenreIndex.open(out).get_set(entry.modality)
    _, want = s.search(np.asarray(s.vectors[:2]), 3)
    assert len(loaded) == 1  # the file the writer made, digest checked
    path = out / entry.dir / "faiss.index"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    s = GenreIndex.open(out).get_set(entry.modality)
    _, got = s.search(np.asarray(s.vectors[:2]), 3)
    assert len(loaded) == 1  # a damaged file is never handed to FAISS: rebuilt from the vectors
    np.testing.assert_array_equal(got, want)


def test_a_head_saved_after_a_reader_opened_is_found_by_it(index_dir):
    _, out = index_dir
    reader = GenreIndex.open(out)
    train_head(reader, HeadSpec("linear", "poster", folds=None), name="later")
    assert load_head(reader, "later").name == "later"
    assert "later" in [h.name for h in reader.heads]
