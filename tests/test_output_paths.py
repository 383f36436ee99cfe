"""Output paths: one that cannot be written is refused before the work starts (evaluate --report,
similar/search --html, predict --out), and a write that fails (disk full) ends with a clear
error, not a traceback."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from _catalogs import copy_fixture
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.errors import OutputPathError
from embedgenre.evaluate.report import check_output_dir, check_report_dir, write_report

runner = CliRunner()
DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


def _in_the_way(tmp_path: Path) -> Path:
    """A regular file where a folder must be: unwritable even for root."""
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    return file


NOT_A_FOLDER = r"notes.txt is a file, not a folder; give a path whose existing parts are"
NO_FOLDER_IN_IT = r"notes.txt is a file, so no folder can be made in it"
# (id, path below the file in the way, what the message says)
DIR_CASES = [("file", "", NOT_A_FOLDER), ("in-file", "out", NO_FOLDER_IN_IT)]
FILE_CASES = [("in-file", "p.csv", NOT_A_FOLDER), ("deep-in-file", "a/p.csv", NO_FOLDER_IN_IT)]


def _fails(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    msg = " ".join(result.stderr.split())
    assert "error:" in msg, msg
    return msg[msg.index("error:") :]  # after the log lines


def _no_work(monkeypatch, target: str):
    """Make ``target`` (the command's work) fail the test if it is ever called."""

    def work(*args, **kwargs):
        raise AssertionError(f"{target} ran before the output path was checked")

    monkeypatch.setattr(target, work)


def _disk_full_for(monkeypatch, suffix: str) -> None:
    """Writing any file ending in ``suffix`` fails with a full disk: plain writes (write_text,
    open for writing) at once, atomic writes when their temporary file is flushed (fsync)."""
    write_text, open_, fsync = Path.write_text, Path.open, os.fsync

    def full_write_text(self, *args, **kwargs):
        if self.name.endswith(suffix):
            raise DISK_FULL
        return write_text(self, *args, **kwargs)

    def full_open(self, mode="r", *args, **kwargs):
        if self.name.endswith(suffix) and "w" in mode:
            raise DISK_FULL
        return open_(self, mode, *args, **kwargs)

    def full_fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.endswith(suffix) or f"{suffix}." in name:
            raise DISK_FULL
        return fsync(fd)

    monkeypatch.setattr(Path, "write_text", full_write_text)
    monkeypatch.setattr(Path, "open", full_open)
    monkeypatch.setattr(os, "fsync", full_fsync)


# ---------------------------------------------------------------------------- library


@pytest.mark.parametrize(
    "below,expected", [c[1:] for c in DIR_CASES], ids=[c[0] for c in DIR_CASES]
)
def test_check_report_dir_refuses_paths_that_cannot_hold_files(tmp_path, below, expected):
    path = _in_the_way(tmp_path) / below if below else _in_the_way(tmp_path)
    with pytest.raises(OutputPathError, match=expected) as e:
        check_report_dir(path)
    assert str(e.value).startswith(f"report directory {path}: ")


def test_check_report_dir_accepts_new_and_existing_folders_and_creates_nothing(tmp_path):
    assert check_report_dir(tmp_path / "reports" / "fixture") == tmp_path / "reports" / "fixture"
    assert not (tmp_path / "reports").exists()
    check_report_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the write test leaves nothing behind


def test_check_output_dir_refuses_a_folder_that_takes_no_file(tmp_path, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused)
    with pytest.raises(OutputPathError, match=r"no file can be created in .*\(Permission denied\)"):
        check_output_dir(tmp_path / "new", "--report x")


def _minimal_result() -> dict:
    return {"rows": [], "per_genre": [], "info": {"genres": []}, "split": {}, "fewshot": []}


@pytest.mark.parametrize("suffix", ["results.json", "results.csv"])
def test_write_report_turns_disk_full_into_a_clear_error(tmp_path, monkeypatch, suffix):
    _disk_full_for(monkeypatch, suffix)
    with pytest.raises(
        OutputPathError,
        match=r"Cannot write the report: cannot write .*"
        + suffix
        + r": No space left on device; the disk is full",
    ):
        write_report(_minimal_result(), tmp_path / "report")


# ---------------------------------------------------------------------------- evaluate --report


@pytest.mark.parametrize(
    "below,expected", [c[1:] for c in DIR_CASES], ids=[c[0] for c in DIR_CASES]
)
def test_evaluate_refuses_an_unwritable_report_before_the_work(
    tmp_path, monkeypatch, below, expected
):
    path = _in_the_way(tmp_path) / below if below else _in_the_way(tmp_path)
    _no_work(monkeypatch, "embedgenre.evaluate.evaluate_index")
    msg = _fails(["evaluate", str(tmp_path / "index"), "--report", str(path)])
    assert f"--report {path}: " in msg and re.search(expected, msg), msg


def test_evaluate_report_written_on_a_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    ev = SimpleNamespace(result=_minimal_result())
    monkeypatch.setattr("embedgenre.evaluate.evaluate_index", lambda *a, **k: ev)
    _disk_full_for(monkeypatch, "results.json")
    report = tmp_path / "report"
    msg = _fails(["evaluate", str(tmp_path / "index"), "--report", str(report)])
    assert f"cannot write {report / 'results.json'}: No space left" in msg


def test_evaluate_figures_written_on_a_full_disk_are_a_clear_error(tmp_path, monkeypatch):
    ev = SimpleNamespace(result=_minimal_result())
    monkeypatch.setattr("embedgenre.evaluate.evaluate_index", lambda *a, **k: ev)
    monkeypatch.setattr("embedgenre.evaluate.report.write_report", lambda *a: {})

    def make_plots(*args):
        raise DISK_FULL

    monkeypatch.setattr("embedgenre.evaluate.make_plots", make_plots)
    report = tmp_path / "report"
    msg = _fails(["evaluate", str(tmp_path / "index"), "--report", str(report)])
    assert f"--report {report}: writing failed (No space left on device)" in msg


# ---------------------------------------------------------------------------- similar, predict


@pytest.fixture(scope="module")
def small(fixture_dir, tmp_path_factory):
    """12 fixture movies, posters by EfficientNet-Lite0, and a kNN head trained on them."""
    from embedgenre.catalog import read_catalog
    from embedgenre.heads import train_head
    from embedgenre.indexing import build_index
    from embedgenre.predictors import HeadSpec
    from embedgenre.store import GenreIndex

    tmp = tmp_path_factory.mktemp("output-paths")
    cat = tmp / "catalog"
    rows = copy_fixture(fixture_dir, cat)
    image_encoders = ["cnn:efficientnet-lite0"]
    build_index(read_catalog(cat), tmp / "index", image_encoders=image_encoders, text_encoders=[])
    train_head(GenreIndex.open(tmp / "index"), HeadSpec("knn", params={"k": 3}, folds=None))
    return {"index": str(tmp / "index"), "catalog": str(cat), "first": rows[0]["imdb_id"]}


def _similar(small, *args) -> list[str]:
    return ["similar", "--id", small["first"], "-k", "3", "--index", small["index"], *args]


def _predict(small, out) -> list[str]:
    args = ["predict", "--catalog", small["catalog"], "--index", small["index"]]
    return args + ["--head", "knn-poster", "--out", str(out)]


HTML_CASES = [("folder", None, r"is a folder; give a file name such as .*similar.html")]
HTML_CASES += [(i, below.replace("p.csv", "p.html"), e) for i, below, e in FILE_CASES]


@pytest.mark.parametrize("command", ["similar", "search"])
@pytest.mark.parametrize(
    "below,expected", [c[1:] for c in HTML_CASES], ids=[c[0] for c in HTML_CASES]
)
def test_html_that_cannot_be_written_is_refused_before_the_search(
    tmp_path, monkeypatch, command, below, expected
):
    _no_work(monkeypatch, "embedgenre.retrieval.open_retriever")
    page = tmp_path if below is None else _in_the_way(tmp_path) / below
    query = ["--id", "tt0000001"] if command == "similar" else ["a haunted house"]
    msg = _fails([command, *query, "--index", str(tmp_path / "index"), "--html", str(page)])
    assert f"--html {page}" in msg and re.search(expected, msg), msg


def test_html_written_on_a_full_disk_is_a_clear_error(small, tmp_path, monkeypatch):
    page = tmp_path / "similar.html"
    result = runner.invoke(app, _similar(small, "--json"), catch_exceptions=False)
    assert result.exit_code == 0, result.output  # the search itself works
    _disk_full_for(monkeypatch, ".html")
    msg = _fails(_similar(small, "--html", str(page)))
    assert f"--html: cannot write {page}: No space left on device" in msg
    assert not page.exists()


OUT_CASES = [("folder", None, r"is a folder; give a file name such as .*predictions.csv")]
OUT_CASES += FILE_CASES


@pytest.mark.parametrize(
    "below,expected", [c[1:] for c in OUT_CASES], ids=[c[0] for c in OUT_CASES]
)
def test_out_that_cannot_be_written_is_refused_before_predicting(
    tmp_path, monkeypatch, below, expected
):
    _no_work(monkeypatch, "embedgenre.store.GenreIndex.open")
    if below is None:
        out = tmp_path / "predictions.csv"
        out.mkdir()
    else:
        out = _in_the_way(tmp_path) / below
    small = {"catalog": str(tmp_path / "catalog"), "index": str(tmp_path / "index")}
    msg = _fails(_predict(small, out))
    assert f"--out {out}" in msg and re.search(expected, msg), msg


@pytest.mark.parametrize("name", ["pred.csv", "pred.json"])
def test_out_written_on_a_full_disk_is_a_clear_error(small, tmp_path, monkeypatch, name):
    out = tmp_path / name
    _disk_full_for(monkeypatch, name)
    msg = _fails(_predict(small, out))
    assert f"--out: cannot write {out}: No space left on device" in msg
    assert not out.exists()
    monkeypatch.undo()
    result = runner.invoke(app, [*_predict(small, out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == 12 and out.stat().st_size > 0
