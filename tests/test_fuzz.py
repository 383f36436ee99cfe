"""Fuzzing the promise: every case ends in success or one clear error.

Random catalogs, damaged index files and damaged saved heads go through the library the way a
user's would. Each case must end in success or one :class:`EmbedgenreError` (for the CLI: exit
status 1 with ``error:``), never another exception, never a hang (a time limit per case), and
never a write outside the output folder.
"""

from __future__ import annotations

import contextlib
import csv
import faulthandler
import io
import json
import os
import shutil
import signal
import tempfile
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _catalogs import png_header_only
from _fakes import Factory, FakeEncoder
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from PIL import Image
from typer.testing import CliRunner

from embedgenre.catalog import poster_stem, read_catalog
from embedgenre.cli.app import app
from embedgenre.errors import EmbedgenreError
from embedgenre.heads import list_heads, load_head, train_head
from embedgenre.indexing import build_index
from embedgenre.predict import ranked_genres
from embedgenre.predictors import HeadSpec
from embedgenre.predictors.registry import predictor_class
from embedgenre.store import GenreIndex, describe_index

CASE_SECONDS = 20  # a case that takes longer is a hang
# examples per test; set EMBEDGENRE_FUZZ_EXAMPLES for a longer run
EXAMPLES = int(os.environ.get("EMBEDGENRE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out


class Hang(BaseException):
    """A case ran past CASE_SECONDS (a BaseException, so no ``except Exception`` hides it)."""


@contextlib.contextmanager
def time_limit(seconds: float = CASE_SECONDS):
    """Raise Hang in the case after ``seconds``; if even that cannot interrupt it (blocked in C),
    dump the stacks and end the run rather than hang the test session."""

    def on_alarm(signum, frame):
        raise Hang(f"the case did not end within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds * 2, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()


def _event(text: str) -> None:
    """Count an outcome in the statistics (``--hypothesis-show-statistics``) of a fuzz test."""
    if currently_in_test_context():
        event(text)


def outcome(fn, *args, **kwargs):
    """(result, None) on success, (None, error) for an EmbedgenreError; anything else raises."""
    try:
        result = fn(*args, **kwargs)
    except EmbedgenreError as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        _event(f"{fn.__name__}: {type(e).__name__}")
        return None, e
    _event(f"{fn.__name__}: success")
    return result, None


def snapshot(top: Path, skip: Path) -> dict[str, tuple]:
    """Every entry under ``top`` but ``skip``: (type, size, mtime) by relative path, no links
    followed."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in dirnames + filenames:
            p = here / name
            if p == skip:
                continue
            s = os.lstat(p)
            seen[p.relative_to(top).as_posix()] = (s.st_mode >> 12, s.st_size, s.st_mtime_ns)
    return seen


def assert_contained(out: Path) -> None:
    """Every file the output folder holds resolves inside it."""
    if not out.exists():
        return
    base = out.resolve()
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            resolved = (Path(dirpath) / name).resolve()
            assert resolved == base or base in resolved.parents, f"{resolved} escapes {out}"


# ------------------------------------------------------------------------------- values

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from([0, 1, -1, 8, 11, 12, 2**31, 2**63, 10**30, "", "8", "flat", "poster"])
)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates and NUL too


# ------------------------------------------------------------------------------- images


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def image_bytes(kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if kind == "rgb_jpg":
        return _encoded(rgb, "JPEG")
    if kind == "one_px_png":
        return _encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")
    if kind == "thin_png":
        return _encoded(Image.new("RGB", (1, 300), (9, 9, 9)), "PNG")
    if kind == "rgba_png":
        return _encoded(rgb.convert("RGBA"), "PNG")
    if kind == "palette_png":
        return _encoded(rgb.convert("P"), "PNG", transparency=0)
    if kind == "la_png":
        return _encoded(rgb.convert("LA"), "PNG")
    if kind == "bilevel_png":
        return _encoded(rgb.convert("1"), "PNG")
    if kind == "gray16_png":
        return _encoded(Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16)), "PNG")
    if kind == "cmyk_jpg":
        return _encoded(rgb.convert("CMYK"), "JPEG")
    if kind == "webp":
        return _encoded(rgb, "WEBP")
    if kind == "gif":
        return _encoded(rgb, "GIF", save_all=True, append_images=[rgb.rotate(90)])
    if kind == "float_tiff":
        return _encoded(rgb.convert("F"), "TIFF")
    if kind == "truncated_jpg":
        data = _encoded(rgb, "JPEG")
        return data[: int(rng.integers(1, len(data)))]
    if kind == "truncated_png":
        data = _encoded(rgb, "PNG")
        return data[: int(rng.integers(1, len(data)))]
    if kind == "bomb_png":
        return png_header_only(60_000, 60_000, colour_type=2)
    if kind == "zero_size_png":
        return png_header_only(0, 0, colour_type=2)
    if kind == "random":
        return rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
    if kind == "text":
        return b"<html>not a poster</html>\n"
    if kind == "empty":
        return b""
    raise AssertionError(kind)


IMAGE_KINDS = (
    "rgb_jpg", "one_px_png", "thin_png", "rgba_png", "palette_png", "la_png", "bilevel_png",
    "gray16_png", "cmyk_jpg", "webp", "gif", "float_tiff", "truncated_jpg", "truncated_png",
    "bomb_png", "zero_size_png", "random", "text", "empty",
)  # fmt: skip
ODD_FILES = ("dir", "fifo", "link_outside", "link_loop", "link_dangling")
POSTER_NAMES = [f"p{i}{ext}" for i in range(3) for ext in (".jpg", ".png", ".JPEG", ".webp")]


def place_poster(path: Path, kind: str, seed: int, outside: Path) -> None:
    """Write poster ``kind`` at ``path`` (the file types a folder may hold, links included)."""
    if path.exists() or path.is_symlink():
        return
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link_outside":
        path.symlink_to(outside)
    elif kind == "link_loop":
        path.symlink_to(path.name)
    elif kind == "link_dangling":
        path.symlink_to("nowhere.jpg")
    else:
        path.write_bytes(image_bytes(kind, seed))


# ------------------------------------------------------------------------------- catalogs

SPECIAL_IDS = [
    "", " ", ".", "..", "../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "\0", "tt\0001",
    "tt0114709", "114709", "TT0114709", "tt", "CON", "nul.txt", "~", "~root", "-rf", "é", "\u202e",
    "\ufeffid", "\u200b", "posters", "movies.csv", "x" * 5000, "a" * 81, "tt" + "9" * 40,
    "id with spaces", "id,comma", 'id"quote', "id\nnewline", "\ud800",
]  # fmt: skip
SPECIAL_POSTERS = [
    "", "../outside/secret.jpg", "/etc/passwd", "/dev/zero", "/dev/null", "/proc/self/status",
    "posters", ".", "..", "posters/missing.jpg", "http://example.com/x.jpg", "file:///etc/passwd",
    "C:\\x.jpg", "~/x.jpg", "posters/\0.jpg", "posters/" + "x" * 300 + ".jpg", "movies.csv",
]  # fmt: skip
YEARS = [
    "1995", "1995.0", "1995-11-22", "0", "-1", "1869", "2100", "2101", "99999999999999999999999",
    "nan", "inf", "1e400", "２０００", "1995.5", " 1995 ", "",
]  # fmt: skip
GENRE_WORDS = [
    "Drama",
    "comedy",
    "sci fi",
    "Sci-Fi",
    "FILM NOIR",
    "",
    " ",
    "Other",
    "é" * 3,
    "a" * 300,
]

ids = st.one_of(st.sampled_from(SPECIAL_IDS), ANY_TEXT, st.from_regex(r"tt\d{1,9}", fullmatch=True))
titles = st.one_of(ANY_TEXT, st.sampled_from(["Toy Story (1995)", "(1995)", "A (99999)", ""]))
years = st.one_of(st.sampled_from(YEARS), st.text(max_size=8), st.integers().map(str))
genres = st.one_of(
    ANY_TEXT,
    st.lists(st.sampled_from(GENRE_WORDS), max_size=5).map("|".join),
    st.lists(st.sampled_from(GENRE_WORDS), max_size=5).map(",".join),
)
plots = st.one_of(
    ANY_TEXT,
    st.integers(0, 200_000).map(lambda n: ("a plot " * (n // 7 + 1))[:n]),
    st.integers(0, 200_000).map(lambda n: "é" * n),
)
posters = st.one_of(
    st.sampled_from(SPECIAL_POSTERS),
    st.sampled_from(POSTER_NAMES).map("posters/".__add__),
    ANY_TEXT,
)
CELLS = {
    "id": ids,
    "title": titles,
    "year": years,
    "genres": genres,
    "plot": plots,
    "poster": posters,
}
COLUMN_FIELD = {
    "imdb_id": "id", "id": "id", "imdbId": "id", "movie_id": "id", "title": "title",
    "Title": "title", "year": "year", "genres": "genres", "Genre": "genres", "tags": "genres",
    "plot": "plot", "overview": "plot", "poster": "poster", "Poster": "poster",
}  # fmt: skip
HEADERS = [
    ["imdb_id", "title", "year", "genres", "plot", "poster"],
    ["id", "genres"],
    ["imdbId", "Title", "Genre", "Poster"],  # the Kaggle layout
    ["imdb_id", "genres", "plot"],
    ["imdb_id", "title", "year", "genres", "plot", "poster", "extra"],
    ["genres", "imdb_id", "genres", "poster"],  # a repeated column
    ["title", "year", "plot"],  # no id, no genres
]
ENCODINGS = ["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]


@st.composite
def catalogs(draw) -> dict:
    header = draw(
        st.one_of(
            st.sampled_from(HEADERS),
            st.permutations(HEADERS[0]),
            st.lists(
                st.one_of(st.sampled_from(list(COLUMN_FIELD)), st.text(max_size=10)), max_size=8
            ),
        )
    )
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(CELLS.get(COLUMN_FIELD.get(c, ""), ANY_TEXT)) for c in header]
        change = draw(st.integers(-2, 2))
        row = row[:change] if change < 0 else row + [draw(ANY_TEXT) for _ in range(change)]
        rows.append(row)
    images = draw(
        st.lists(
            st.tuples(
                st.sampled_from(POSTER_NAMES),
                st.sampled_from(IMAGE_KINDS + ODD_FILES),
                st.integers(0, 2**16),
            ),
            max_size=5,
        )
    )
    return {
        "header": header,
        "rows": rows,
        "images": images,
        "poster_of_first_id": draw(st.sampled_from((None,) + IMAGE_KINDS + ODD_FILES)),
        "encoding": draw(st.sampled_from(ENCODINGS)),
        "garbage": draw(
            st.none()
            | st.tuples(
                st.integers(0, 10**6),
                st.binary(min_size=1, max_size=20)
                | st.sampled_from([b'"', b"\0", b"\r", b"\n\n", b"\xff\xfe", b'",,"']),
            )
        ),
        "raw": draw(st.none() | st.binary(max_size=400)),
        "as_folder": draw(st.booleans()),
        "layout": draw(st.sampled_from(["auto", "auto", "csv", "kaggle"])),
        "genre_sep": draw(st.sampled_from(["|", "|", ",", ";"])),
    }


def csv_bytes(case: dict) -> bytes:
    if case["raw"] is not None:
        return case["raw"]
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(case["header"])
    w.writerows(case["rows"])
    text = buf.getvalue()
    enc = case["encoding"]
    data = text.encode(enc, "surrogatepass" if enc.startswith("utf") else "replace")
    if case["garbage"] is not None:
        at, junk = case["garbage"]
        at %= len(data) + 1
        data = data[:at] + junk + data[at:]
    return data


def write_catalog(top: Path, case: dict) -> Path:
    cat, outside = top / "cat", top / "outside"
    (cat / "posters").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.jpg"
    secret.write_bytes(image_bytes("rgb_jpg", 1))
    (cat / "movies.csv").write_bytes(csv_bytes(case))
    for name, kind, seed in case["images"]:
        place_poster(cat / "posters" / name, kind, seed, secret)
    first = case["rows"][0][0] if case["rows"] and case["rows"][0] else ""
    if case["poster_of_first_id"] and first:
        place_poster(
            cat / "posters" / f"{poster_stem(first)}.jpg", case["poster_of_first_id"], 7, secret
        )
    return cat


def use_index(out: Path) -> None:
    """Read everything an index offers; an index that was just written must open."""
    idx = GenreIndex.open(out)
    assert len(idx.items) == len(idx.ids) == len(idx.labels)
    rng = np.random.default_rng(0)
    for s in idx.sets:
        q = rng.standard_normal((2, s.dim)).astype(np.float32)
        scores, rows = s.search(q / np.linalg.norm(q, axis=1, keepdims=True), 5)
        assert rows.shape == (2, 5) and rows.max() < len(idx.ids)
    for item_id in idx.ids[:3]:
        idx.thumbnail(item_id)
    describe_index(out)


@settings(FUZZ, max_examples=EXAMPLES)
@given(case=catalogs())
@example(
    case={
        "header": ["imdb_id", "genres", "poster"],
        "rows": [["tt1", "Drama", "posters/p0.jpg"], ["tt2", "Comedy", "posters/p1.jpg"]],
        "images": [("p0.jpg", "link_loop", 0), ("p1.jpg", "fifo", 0)],
        "poster_of_first_id": None,
        "encoding": "utf-8",
        "garbage": None,
        "raw": None,
        "as_folder": True,
        "layout": "auto",
        "genre_sep": "|",
    }
)
def test_any_catalog_is_indexed_or_refused_clearly_writing_only_the_output(case):
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        cat = write_catalog(top, case)
        out = top / "out"
        before = snapshot(top, skip=out)
        with time_limit(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = cat if case["as_folder"] else cat / "movies.csv"
            catalog, _ = outcome(
                read_catalog, source, layout=case["layout"], genre_sep=case["genre_sep"]
            )
            if catalog is not None:
                summary, _ = outcome(
                    build_index,
                    catalog,
                    out,
                    image_encoders=["fake:a"],
                    text_encoders=["fake:t"],
                    encoder_factory=Factory(),
                )
                if summary is not None:
                    use_index(out)
        assert snapshot(top, skip=out) == before, "a file outside the output folder changed"
        assert_contained(out)


def fake_encoders():
    """The CLI's encoder registry answering with the fast fake encoder."""
    import embedgenre.encoders as registry

    stack = contextlib.ExitStack()
    stack.enter_context(
        mock.patch.object(registry, "create_encoder", lambda name, device="cpu": FakeEncoder(name))
    )
    known = registry.encoder_spec  # the fakes' weights are "on the machine" for index's check
    stack.enter_context(
        mock.patch.object(
            registry,
            "encoder_spec",
            lambda name: (
                SimpleNamespace(available=True) if name.startswith("fake:") else known(name)
            ),
        )
    )
    return stack


def check_cli(args: list[str]):
    """Run the CLI: it ends with exit status 0, or 1 with one ``error:`` line and no traceback."""
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output[-2000:]}"
    )
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert "error:" in result.output and "Traceback" not in result.output
    _event(f"embedgenre {args[0]}: exit {result.exit_code}")
    return result


@settings(FUZZ, max_examples=max(1, EXAMPLES // 2))
@given(case=catalogs())
def test_cli_index_of_any_catalog_succeeds_or_exits_1_writing_only_the_output(case):
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        cat = write_catalog(top, case)
        out = top / "out"
        before = snapshot(top, skip=out)
        source = cat if case["as_folder"] else cat / "movies.csv"
        args = ["index", str(source), "--out", str(out), "--json", "--layout", case["layout"]]
        args += ["--genre-sep", case["genre_sep"], "--image-encoder", "fake:a"]
        with time_limit(), fake_encoders():
            result = check_cli([*args, "--text-encoder", "fake:t"])
            if result.exit_code == 0:
                check_cli(["info", str(out), "--json"])
        assert snapshot(top, skip=out) == before, "a file outside the output folder changed"
        assert_contained(out)


def test_cli_index_prints_ids_with_brackets_as_text(tmp_path):
    cat = tmp_path / "cat"
    (cat / "posters").mkdir(parents=True)
    (cat / "posters" / "x.jpg").write_bytes(b"not an image")
    (cat / "movies.csv").write_text("imdb_id,genres,poster\n[/],Drama,posters/x.jpg\n")
    args = ["index", str(cat), "--out", str(tmp_path / "out"), "--image-encoder", "fake:a"]
    with fake_encoders():
        result = check_cli([*args, "--text-encoder", "fake:t"])
    assert result.exit_code == 0 and "[/]" in result.output


def test_cli_info_prints_genres_with_brackets_as_text(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "movies.csv").write_text("imdb_id,genres,plot\ntt1,[/],a plot\n")
    out = tmp_path / "out"
    build_index(read_catalog(cat), out, [], ["fake:t"], encoder_factory=Factory())
    result = check_cli(["info", str(out)])
    assert result.exit_code == 0 and "[/]" in result.output


# ------------------------------------------------------------------------------- index files


@pytest.fixture(scope="module")
def base_index(tmp_path_factory) -> Path:
    """A small valid index (posters with thumbnails, plots, a skip list) with linear head "h"."""
    top = tmp_path_factory.mktemp("fuzz-base")
    cat = top / "cat"
    (cat / "posters").mkdir(parents=True)
    kinds = ["rgb_jpg", "rgba_png", "palette_png", "one_px_png", "cmyk_jpg", "la_png"]
    rows = []
    for i in range(12):
        ext = ".jpg" if kinds[i % len(kinds)].endswith("jpg") else ".png"
        kind = "truncated_jpg" if i == 11 else kinds[i % len(kinds)]
        (cat / "posters" / f"tt{i:07d}{ext}").write_bytes(image_bytes(kind, i))
        genre = ["Drama", "Comedy", "Horror"][i % 3] + ("|Drama" if i % 2 else "")
        rows.append([f"tt{i:07d}", f"Movie {i}", "1990", genre, f"plot {i} " * (i + 1)])
    with open(cat / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["imdb_id", "title", "year", "genres", "plot"])
        w.writerows(rows)
    out = top / "idx"
    build_index(
        read_catalog(cat),
        out,
        image_encoders=["fake:a"],
        text_encoders=["fake:t"],
        encoder_factory=Factory(),
    )
    train_head(GenreIndex.open(out), HeadSpec("linear", "poster", folds=None), name="h")
    idx = GenreIndex.open(out)
    assert idx.skipped and idx.manifest.skipped_file and idx.head_dir("h")
    return out


DELETE = "<delete>"
MANIFEST_FIELDS = [
    ("format",), ("format_version",), ("generation",), ("items_file",), ("skipped_file",),
    ("genres",), ("genre_counts",), ("counts",), ("sets",), ("heads",), ("defaults",),
    ("encoders",), ("complete",), ("catalog",), ("items_digest",), ("created",),
    ("defaults", "poster"), ("heads", 0), ("heads", 0, "name"), ("heads", 0, "dir"),
    ("encoders", 0), ("encoders", 0, "name"), ("genres", 0), ("genre_counts", "Drama"),
    *(
        ("sets", i, *f)
        for i in (0, 1)
        for f in [
            (), ("key",), ("modality",), ("dir",), ("count",), ("thumbnails",), ("faiss",),
            ("faiss", "kind"), ("encoder",), ("encoder", "dim"), ("encoder", "name"),
            ("encoder", "space"), ("updated",),
        ]
    ),
]  # fmt: skip
SPECIAL_VALUES = [
    None, True, False, 0, 1, -1, 4, 8, 9, 11, 12, 13, 2**31, 2**63, 10**30, 0.5, 8.0,
    float("nan"), float("inf"), "", "8", [], {}, [1], {"a": 1}, ["Drama", "Drama"],
    ["Horror", "Comedy", "Drama"], "poster", "plot", "both", "poster__fake-a", "plot__fake-t",
    "flat", "auto", "ivf_sq8", "hnsw_sq8", "ivf_sq8:nlist=0", "ivf_sq8:nlist=4",
    "ivf_sq8:nlist=100000", "ivf_sq8:nprobe=0", "ivf_sq8:nprobe=-3", "ivf_sq8:nlist=-1",
    "hnsw_sq8:M=0", "hnsw_sq8:M=-1", "hnsw_sq8:ef_search=0", "hnsw_sq8:M=99999999999999999999",
    "flat:x=1", "auto:nlist=2", "ivf_sq8:nlist=2,nprobe=1", "hnsw_sq8:M=1", "hnsw_sq8:M=2",
    "hnsw_sq8:M=2147483647", "auto:M=1", {"kind": "hnsw_sq8:M=4"}, {"kind": "ivf_sq8:nlist=0"},
    {"kind": "ivf_sq8:nlist=1"}, {"name": "fake:a", "dim": 4}, {"name": "fake:a", "dim": 8},
    {"modality": "poster", "name": "fake:a"}, {"name": "h", "dir": "heads"},
    ".", "..", "/", "/etc/passwd", "../outside", "manifest.json", "embeddings", "heads",
    "a\0b", "a\\b", "~", "~/x", "embeddings/../manifest.json", "x" * 5000, "nonexistent",
]  # fmt: skip
NPY_FILES = ["vectors.npy", "ids.npy", "hashes.npy", "thumbs.npy", "thumbs.bin"]
DTYPES = [
    "float32", "float64", "float16", ">f4", "int64", "int32", "int8", "uint8", "uint64", "bool",
    "complex64", "<U12", "S4", "object", "V8", "structured",
]  # fmt: skip
DIMS = st.sampled_from([0, 1, 2, 3, 8, 9, 11, 12, 13, 16]) | st.integers(0, 20)


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(DIMS, max_size=3)))
    fill = draw(st.sampled_from(["zeros", "random", "nan", "inf", "huge", "big", "negative"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    size = int(np.prod(shape))
    if dtype == "object":
        values = [None, 1, "tt0000001", 2.5, [1], {"a": 1}]
        a = np.empty(size, dtype=object)
        for i in range(size):
            a[i] = values[int(rng.integers(len(values)))]
        a = a.reshape(shape)
    elif dtype == "<U12":
        words = [f"tt{i:07d}" for i in range(14)] + ["", "x" * 12, "é"]
        a = np.array([words[int(rng.integers(len(words)))] for _ in range(size)], "<U12")
        a = a.reshape(shape)
    elif dtype == "S4":
        a = rng.integers(0, 256, (*shape, 4), dtype=np.uint8).view("S4").reshape(shape)
    elif dtype == "V8":
        a = np.zeros(shape, "V8")
    elif dtype == "structured":
        a = np.zeros(shape, [("x", "<f4"), ("y", "<i8")])
    else:
        base = {
            "zeros": np.zeros(size),
            "random": rng.standard_normal(size) * 10,
            "nan": np.full(size, np.nan),
            "inf": np.full(size, np.inf),
            "huge": np.full(size, 1e300),
            "big": np.full(size, 2.0**62),
            "negative": -rng.integers(0, 1000, size).astype(float),
        }[fill]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = base.astype(dtype).reshape(shape)
    return np.asfortranarray(a) if draw(st.booleans()) else a


def _set_at(doc, path, value):
    """``doc`` with the value at ``path`` replaced (DELETE removes it); a missing step is
    created (an object key) or ignored (a list index)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        if not isinstance(doc, list) or head >= len(doc):
            return doc
        if value is DELETE and not rest:
            del doc[head]
        else:
            doc[head] = _set_at(doc[head], rest, value)
        return doc
    if not isinstance(doc, dict):
        return doc
    if value is DELETE and not rest:
        doc.pop(head, None)
    else:
        doc[head] = _set_at(doc.get(head, {}), rest, value)
    return doc


def _write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc))  # NaN and Infinity as Python writes them


def damage_file(path: Path, op: str, arg: int, outside: Path) -> None:
    """Damage one file of an index: cut, flip, replace or swap it for another kind of entry."""
    data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    if op in ("dir", "fifo", "link_outside", "link_loop", "delete"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        if op != "delete":
            place_poster(path, op, arg, outside)
    elif op == "truncate":
        path.write_bytes(data[: arg % (len(data) + 1)])
    elif op == "flip" and data:
        i = arg % len(data)
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif op == "random":
        path.write_bytes(np.random.default_rng(arg).bytes(arg % 5000))
    elif op == "empty":
        path.write_bytes(b"")


FILE_OPS = [
    "truncate",
    "flip",
    "random",
    "empty",
    "delete",
    "dir",
    "fifo",
    "link_outside",
    "link_loop",
]


def items_table(draw, base_ids: list[str]):
    """A parquet item table with odd column types, nulls, repeats, missing columns."""
    n = draw(st.integers(0, 14))
    pick = draw(st.sampled_from(["base", "dup", "null", "int", "large", "binary", "random"]))
    some = [base_ids[i % len(base_ids)] for i in range(n)]
    id_col = {
        "base": lambda: pa.array(some, pa.string()),
        "dup": lambda: pa.array(["tt0000000"] * n, pa.string()),
        "null": lambda: pa.array([None] + some[1:] if n else [], pa.string()),
        "int": lambda: pa.array(list(range(n)), pa.int64()),
        "large": lambda: pa.array(some, pa.large_string()),
        "binary": lambda: pa.array([s.encode() for s in some], pa.binary()),
        "random": lambda: pa.array(draw(st.lists(st.text(max_size=8), min_size=n, max_size=n))),
    }[pick]()
    kind = draw(
        st.sampled_from(["list", "string", "ints", "nested", "structs", "nulls", "null_items"])
    )
    g = ["Drama", "Comedy", None, "Horror"]
    genre_col = {
        "list": lambda: pa.array([[g[i % 2]] for i in range(n)], pa.list_(pa.string())),
        "string": lambda: pa.array(["Drama"] * n, pa.string()),
        "ints": lambda: pa.array([[i] for i in range(n)], pa.list_(pa.int64())),
        "nested": lambda: pa.array([[["Drama"]]] * n, pa.list_(pa.list_(pa.string()))),
        "structs": lambda: pa.array([[{"a": "Drama"}]] * n),
        "nulls": lambda: pa.array([None] * n, pa.list_(pa.string())),
        "null_items": lambda: pa.array([g] * n, pa.list_(pa.string())),
    }[kind]()
    cols = {"id": id_col, "genres": genre_col}
    for name in ("title", "year", "plot", "poster"):
        choice = draw(st.sampled_from(["missing", "text", "int", "null"]))
        if choice == "text":
            cols[name] = pa.array(["x"] * n, pa.string())
        elif choice == "int":
            cols[name] = pa.array(list(range(n)), pa.int64())
        elif choice == "null":
            cols[name] = pa.nulls(n)
    if draw(st.booleans()):
        cols.pop(draw(st.sampled_from(["id", "genres"])))
    return pa.table(cols)


def damage_index(data, copy: Path, outside: Path, base_ids: list[str]) -> str:
    """Change one thing of the index at ``copy``; returns what was done (for the report)."""
    manifest = copy / "manifest.json"
    doc = json.loads(manifest.read_text())
    what = data.draw(
        st.sampled_from(["manifest", "field", "field", "field", "array", "array", "file", "items"])
    )
    if what == "manifest":
        _write_json(manifest, data.draw(JSON | st.dictionaries(st.sampled_from(list(doc)), JSON)))
    elif what == "field":
        path = data.draw(st.sampled_from(MANIFEST_FIELDS))
        value = data.draw(st.one_of(st.just(DELETE), st.sampled_from(SPECIAL_VALUES), JSON))
        _write_json(manifest, _set_at(doc, list(path), value))
        return f"manifest {path} = {value!r}"[:300]
    elif what == "array":
        folder = copy / data.draw(st.sampled_from([s["dir"] for s in doc["sets"]]))
        name = data.draw(st.sampled_from(NPY_FILES))
        a = data.draw(arrays())
        (folder / name).unlink(missing_ok=True)
        np.save(folder / name, a, allow_pickle=True)
        return f"{folder.name}/{name} = {a.dtype} {a.shape}"
    elif what == "file":
        files = sorted(
            p.relative_to(copy).as_posix()
            for p in copy.rglob("*")
            if p.is_file() and not p.name.startswith(".lock")
        )
        rel = data.draw(st.sampled_from(files))
        op = data.draw(st.sampled_from(FILE_OPS))
        damage_file(copy / rel, op, data.draw(st.integers(0, 2**20)), outside)
        return f"{rel}: {op}"
    else:
        table = items_table(data.draw, base_ids)
        (copy / doc["items_file"]).unlink()
        pq.write_table(table, copy / doc["items_file"])
        return f"items table {table.schema}"
    return what


def exercise_index(path: Path, rng: np.random.Generator) -> None:
    """Everything a reader does with an index that opened."""
    idx = GenreIndex.open(path)
    assert len(idx.items) == len(idx.ids)
    assert idx.labels.shape == (len(idx.ids), len(idx.genres))
    for s in idx.sets:
        q = rng.standard_normal((1, s.dim)).astype(np.float32)
        k = int(rng.integers(1, 30))
        scores, rows = s.search(q / np.linalg.norm(q), k)
        assert rows.shape == (1, k)
        assert ((rows == -1) | ((rows >= 0) & (rows < len(idx.ids)))).all()
    for item_id in [*idx.ids[:2], "tt0000011", "no such id"]:
        thumb = idx.thumbnail(item_id)
        assert thumb is None or (isinstance(thumb, bytes) and thumb), "an empty thumbnail"
    if idx.sets:
        idx.get_set(idx.sets[0].modality)
    list_heads(idx)
    describe_index(path)


def check_cli_info(path: Path) -> None:
    check_cli(["info", str(path), "--json"])


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data())
def test_a_damaged_index_opens_or_is_refused_clearly(base_index, data):
    with tempfile.TemporaryDirectory() as tmp:
        copy, outside = Path(tmp) / "idx", Path(tmp) / "secret.npy"
        np.save(outside, np.zeros((12, 8), np.float32))
        shutil.copytree(base_index, copy, symlinks=True)
        base_ids = GenreIndex.open(base_index).ids
        what = damage_index(data, copy, outside, base_ids)
        note(what)
        with time_limit():
            outcome(exercise_index, copy, np.random.default_rng(0))
            check_cli_info(copy)


# ------------------------------------------------------------------------------- heads

HEAD_FIELDS = [
    ("format",), ("name",), ("method",), ("modality",), ("fusion",), ("encoders",), ("genres",),
    ("metrics",), ("predictor",), ("encoders", "poster"), ("encoders", "poster", "dim"),
    ("encoders", "poster", "encoder"), ("encoders", "poster", "space"), ("encoders", "plot"),
    ("genres", 0), ("predictor", "method"), ("predictor", "params"),
    ("predictor", "params", "C"), ("predictor", "params", "max_iter"),
    ("predictor", "params", "class_weight"), ("predictor", "params", "unknown"),
    ("predictor", "classes"), ("predictor", "classes", 0), ("predictor", "thresholds"),
    ("predictor", "thresholds", 0), ("predictor", "at_least_one"), ("predictor", "state"),
]  # fmt: skip
HEAD_VALUES = [
    None, True, 0, 1, -1, 3, 8, 9, 2**63, 1e308, float("nan"), float("inf"), "", "linear", "knn",
    "mlp", "fusion", "zeroshot", "both", "plot", "balanced", [], {}, [0.5, 0.5], [0.5] * 3,
    [0.5] * 4, [2.0, -1.0, 0.5], ["Drama", "Comedy", "Horror"], ["Horror", "Comedy", "Drama"],
    ["Drama", "Comedy", "Horror", "War"], ["Drama", "Comedy"], ["Drama", "Drama", "Horror"],
    {"encoder": "fake:a", "dim": 8}, {"encoder": "fake:a", "dim": 4}, {"poster": {}},
    {"n_layers": 2}, {"dims": [8, 8], "weight": 0.5, "parts": {}},
]  # fmt: skip
# the array shapes a saved head of each method has (as its class declares them, plus one MLP)
METHOD_ARRAYS = {
    **{m: predictor_class(m).saved_arrays for m in ("linear", "knn", "mlknn", "zeroshot")},
    "mlp": {"W0": ("d", "h"), "b0": ("h",), "W1": ("h", "g"), "b1": ("g",)},
}


def predictor_case(draw) -> tuple[dict, dict[str, np.ndarray]]:
    """A plausible description of any saved method with arrays of near-right shapes."""
    method = draw(st.sampled_from([*METHOD_ARRAYS, "fusion"]))
    classes = ["Drama", "Comedy", "Horror"]
    sizes = {
        "g": draw(st.sampled_from([3, 3, 2, 4])),
        "d": draw(st.sampled_from([8, 8, 16, 4])),
        "n": draw(st.sampled_from([1, 5, 12])),
        "k1": draw(st.sampled_from([11, 2, 1])),
        "h": draw(st.sampled_from([4, 1])),
    }
    kind = draw(st.sampled_from(["random", "zeros", "nan", "huge", "negative"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def make(shape):
        a = {
            "random": rng.random(shape),
            "zeros": np.zeros(shape),
            "nan": np.full(shape, np.nan),
            "huge": np.full(shape, 1e30),
            "negative": -rng.random(shape),
        }[kind]
        dtype = draw(st.sampled_from(["float32", "float64", "int64", "uint8"]))
        with np.errstate(invalid="ignore"):
            return a.astype(dtype)

    def part(m, prefix=""):
        desc = {
            "method": m,
            "params": draw(
                st.sampled_from([{}, {"k": sizes["k1"] - 1}, {"k": 0}, {"s": -1.0}])
                if m in ("knn", "mlknn")
                else st.sampled_from([{}, {"hidden": [4]}] if m == "mlp" else [{}])
            ),
            "classes": classes,
            "thresholds": [0.5] * 3,
            "at_least_one": draw(st.booleans()),
            "state": {"n_layers": 2} if m == "mlp" else {},
        }
        arrays = {
            f"{prefix}{k}": make(tuple(sizes[s] for s in dims))
            for k, dims in METHOD_ARRAYS[m].items()
        }
        return desc, arrays

    if method != "fusion":
        return part(method)
    parts, arrays = {}, {}
    for which in draw(st.sets(st.sampled_from(["poster", "plot", "joint"]), min_size=1)):
        desc, a = part(draw(st.sampled_from(list(METHOD_ARRAYS))), f"{which}/")
        parts[which] = desc
        arrays.update(a)
    state = {"dims": draw(st.sampled_from([[8, 8], [4, 4], [8, 0]])), "weight": 0.5, "parts": parts}
    desc = {
        "method": "fusion",
        "params": {},
        "classes": classes,
        "thresholds": [0.5] * 3,
        "at_least_one": True,
        "state": state,
    }
    return desc, arrays


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def damage_head(data, folder: Path, outside: Path) -> str:
    head_json, arrays_npz = folder / "head.json", folder / "arrays.npz"
    doc = json.loads(head_json.read_text())
    what = data.draw(
        st.sampled_from(
            ["doc", "field", "field", "field", "method", "arrays", "array", "member", "file"]
        )
    )
    if what == "doc":
        _write_json(head_json, data.draw(JSON | st.dictionaries(st.sampled_from(list(doc)), JSON)))
    elif what == "field":
        path = data.draw(st.sampled_from(HEAD_FIELDS))
        value = data.draw(st.one_of(st.just(DELETE), st.sampled_from(HEAD_VALUES), JSON))
        _write_json(head_json, _set_at(doc, list(path), value))
        return f"head.json {path} = {value!r}"[:300]
    elif what == "method":
        desc, stored = predictor_case(data.draw)
        doc["predictor"] = desc
        if data.draw(st.booleans()):
            doc["modality"], doc["method"] = "both", desc["method"]
            doc["encoders"] = {
                "poster": {"encoder": "fake:a", "dim": 8},
                "plot": {"encoder": "fake:t", "dim": 8},
            }
        _write_json(head_json, doc)
        arrays_npz.unlink()
        np.savez(arrays_npz, **stored)
        return f"predictor {desc['method']} { ({k: v.shape for k, v in stored.items()}) }"
    elif what == "arrays":
        keys = st.sampled_from(["coef", "intercept", "X", "W0", "poster/coef"]) | st.text(
            "abc/", min_size=1, max_size=5
        )
        found = data.draw(st.dictionaries(keys, arrays(), max_size=3))
        arrays_npz.unlink()
        np.savez(arrays_npz, allow_pickle=True, **found)
        return f"arrays.npz { ({k: (v.dtype, v.shape) for k, v in found.items()}) }"
    elif what == "array":
        with np.load(arrays_npz) as z:
            kept = {k: z[k] for k in z.files}
        key = data.draw(st.sampled_from(sorted(kept)))
        kept[key] = data.draw(arrays())
        arrays_npz.unlink()
        if data.draw(st.booleans()):
            np.savez(arrays_npz, allow_pickle=True, **kept)
        else:
            np.save(arrays_npz.with_suffix(".npy"), kept[key], allow_pickle=True)
            arrays_npz.with_suffix(".npy").rename(arrays_npz)  # a bare array in the npz's place
        return f"arrays.npz[{key}] = {kept[key].dtype} {kept[key].shape}"
    elif what == "member":  # a well-formed archive holding one damaged .npy member
        with np.load(arrays_npz) as z:
            kept = {k: z[k] for k in z.files}
        key = data.draw(st.sampled_from(sorted(kept)))
        members = {k: _npy_bytes(v) for k, v in kept.items()}
        raw = members[key]
        op = data.draw(st.sampled_from(["flip", "truncate", "random"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        members[key] = {
            "flip": raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :],
            "truncate": raw[:i],
            "random": np.random.default_rng(i).bytes(i),
        }[op]
        with zipfile.ZipFile(arrays_npz, "w") as zf:
            for k, b in members.items():
                zf.writestr(f"{k}.npy", b)
        return f"arrays.npz member {key}.npy: {op} at {i}"
    else:
        target = data.draw(st.sampled_from([head_json, arrays_npz]))
        op = data.draw(st.sampled_from(FILE_OPS))
        damage_file(target, op, data.draw(st.integers(0, 2**20)), outside)
        return f"{target.name}: {op}"
    return what


def exercise_head(copy: Path, rng: np.random.Generator) -> None:
    idx = GenreIndex.open(copy)
    head = load_head(idx, "h")
    d = sum(e["dim"] for e in head.encoders.values())
    for m in (1, 3):
        X = rng.standard_normal((m, d)).astype(np.float32)
        P = np.asarray(head.predictor.predict_proba(X))
        assert P.shape == (m, len(head.genres)), f"{P.shape} scores for {head.genres}"
        ranking = ranked_genres(head, P, top=2)
        assert len(ranking) == m and all(r["genre"] in head.genres for r in ranking[0])


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data())
def test_a_damaged_head_loads_or_is_refused_clearly(base_index, data):
    with tempfile.TemporaryDirectory() as tmp:
        copy, outside = Path(tmp) / "idx", Path(tmp) / "secret.json"
        outside.write_text("{}")
        shutil.copytree(base_index, copy, symlinks=True)
        what = damage_head(data, GenreIndex.open(copy).head_dir("h"), outside)
        note(what)
        with time_limit():
            outcome(exercise_head, copy, np.random.default_rng(0))


# ------------------------------------------------------------------------------- found cases


def _garble_header(path: Path) -> None:
    """Break the Python literal in an .npy header (numpy then fails while tokenizing it)."""
    raw = path.read_bytes()
    path.write_bytes(raw[:10] + bytes([raw[10] ^ 0xFF]) + raw[11:])


def _set_manifest(copy: Path, path: tuple, value) -> None:
    doc = json.loads((copy / "manifest.json").read_text())
    _write_json(copy / "manifest.json", _set_at(doc, list(path), value))


def _first_set(copy: Path) -> Path:
    return copy / json.loads((copy / "manifest.json").read_text())["sets"][0]["dir"]


def _skip_list(copy: Path) -> Path:
    return copy / json.loads((copy / "manifest.json").read_text())["skipped_file"]


def _items(copy: Path) -> Path:
    return copy / json.loads((copy / "manifest.json").read_text())["items_file"]


def _items_with_genres(copy: Path, genres) -> None:
    table = pq.read_table(_items(copy))
    table = table.set_column(table.schema.get_field_index("genres"), "genres", genres(len(table)))
    pq.write_table(table, _items(copy))


INDEX_CASES = {
    "0-d hashes": lambda c: np.save(_first_set(c) / "hashes.npy", np.float32(0)),
    "garbled npy header": lambda c: _garble_header(_first_set(c) / "hashes.npy"),
    "skip list is a FIFO": lambda c: (_skip_list(c).unlink(), os.mkfifo(_skip_list(c))),
    "item table is a FIFO": lambda c: (_items(c).unlink(), os.mkfifo(_items(c))),
    "item table is a folder": lambda c: (_items(c).unlink(), _items(c).mkdir()),
    "skip list is a link loop": lambda c: (
        _skip_list(c).unlink(),
        _skip_list(c).symlink_to(_skip_list(c).name),
    ),
    "item table name too long": lambda c: _set_manifest(c, ("items_file",), "x" * 5000),
    "thumbnail offsets overflow": lambda c: np.save(
        _first_set(c) / "thumbs.npy",
        np.full((11, 2), 2**62, np.int64),
    ),
    "genres are lists of lists": lambda c: _items_with_genres(
        c, lambda n: pa.array([[["Drama"]]] * n)
    ),
    "genres are lists of structs": lambda c: _items_with_genres(
        c, lambda n: pa.array([[{"g": "Drama"}]] * n)
    ),
    **{  # FAISS crashes the process (nlist=0, M=1, M=0), hangs (M=-1) or raises on these
        f"FAISS kind {kind}": lambda c, kind=kind: _set_manifest(
            c, ("sets", 0, "faiss"), {"kind": kind}
        )
        for kind in (
            "ivf_sq8:nlist=0",
            "ivf_sq8:nprobe=-3",
            "ivf_sq8:nlist=-1",
            "hnsw_sq8:M=0",
            "hnsw_sq8:M=1",
            "hnsw_sq8:M=-1",
            "hnsw_sq8:M=99999999999999999999",
            "hnsw_sq8:M=2147483647",
            "auto:M=1",
            "unknown",
        )
    },
}


@pytest.mark.parametrize("damage", list(INDEX_CASES))
def test_index_damage_found_by_fuzzing_is_one_clear_error(base_index, tmp_path, damage):
    copy = tmp_path / "idx"
    shutil.copytree(base_index, copy, symlinks=True)
    INDEX_CASES[damage](copy)
    with time_limit(), pytest.raises(EmbedgenreError, match=str(copy)):
        exercise_index(copy, np.random.default_rng(0))
    check_cli_info(copy)


def _head_fifo(folder: Path) -> None:
    (folder / "head.json").unlink()
    os.mkfifo(folder / "head.json")


def _garbled_member(folder: Path) -> None:
    with np.load(folder / "arrays.npz") as z:
        members = {k: _npy_bytes(z[k]) for k in z.files}
    raw = members["coef"]
    members["coef"] = raw[:10] + bytes([raw[10] ^ 0xFF]) + raw[11:]
    with zipfile.ZipFile(folder / "arrays.npz", "w") as zf:
        for k, b in members.items():
            zf.writestr(f"{k}.npy", b)


@pytest.mark.parametrize("damage", [_head_fifo, _garbled_member])
def test_head_damage_found_by_fuzzing_is_one_clear_error(base_index, tmp_path, damage):
    copy = tmp_path / "idx"
    shutil.copytree(base_index, copy, symlinks=True)
    damage(GenreIndex.open(copy).head_dir("h"))
    with time_limit(), pytest.raises(EmbedgenreError, match="head.json|arrays.npz"):
        exercise_head(copy, np.random.default_rng(0))


def test_a_poster_path_with_nul_is_a_listed_problem(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "movies.csv").write_text("imdb_id,genres,poster\ntt1,Drama,posters/\0.jpg\n")
    catalog = read_catalog(cat)
    assert catalog.items[0].poster is None
    assert any("NUL" in p for p in catalog.problems)
    build_index(catalog, tmp_path / "out", ["fake:a"], ["fake:t"], encoder_factory=Factory())


def test_an_empty_set_answers_searches_with_no_neighbours(base_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(base_index, copy, symlinks=True)
    folder = _first_set(copy)
    np.save(folder / "vectors.npy", np.zeros((0, 8), np.float32))
    for name in ("ids.npy", "hashes.npy"):
        np.save(folder / name, np.array([], dtype="<U9"))
    np.save(folder / "thumbs.bin", np.zeros(0, np.uint8))
    np.save(folder / "thumbs.npy", np.zeros((0, 2), np.int64))
    _set_manifest(copy, ("sets", 0, "count"), 0)
    poster = GenreIndex.open(copy).get_set("poster")
    assert len(poster.rows) == 0
    scores, rows = poster.search(np.ones((1, 8), np.float32) / np.sqrt(8), 3)
    assert (rows == -1).all() and np.isneginf(scores).all()
    exercise_index(copy, np.random.default_rng(0))
