"""Damaged or foreign saved heads: loading refuses each with a PredictorError that names the file,
what is wrong and how to replace the head (library), and `embedgenre predict --head` exits 1
with that message and no traceback (CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from _catalogs import copy_fixture
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.errors import PredictorError
from embedgenre.heads.files import load_predictor, save_predictor
from embedgenre.predictors import make_predictor

runner = CliRunner()
GENRES = [f"g{i}" for i in range(6)]
RETRAIN = "The head is damaged or was written by another program; train it again: `embedgenre train"


def _data(n=120, d=16, g=6, seed=0):
    """Seeded multi-label data: X = normalise(Y @ centres + noise)."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < 0.3).astype(np.uint8)
    Y[Y.sum(1) == 0, 0] = 1
    X = Y @ rng.standard_normal((g, d)) + 1.5 * rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), Y


def _edit_json(change):
    """A corruption that rewrites head.json: ``change(doc)`` edits the parsed document."""

    def corrupt(head: Path) -> None:
        doc = json.loads((head / "head.json").read_text())
        change(doc)
        (head / "head.json").write_text(json.dumps(doc))

    return corrupt


def _edit_arrays(change):
    """A corruption that rewrites arrays.npz: ``change(arrays)`` edits the dict of arrays."""

    def corrupt(head: Path) -> None:
        with np.load(head / "arrays.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        change(arrays)
        np.savez(head / "arrays.npz", **arrays)

    return corrupt


def _write(name: str, content: bytes):
    def corrupt(head: Path) -> None:
        (head / name).write_bytes(content)

    return corrupt


def _remove(name: str):
    def corrupt(head: Path) -> None:
        (head / name).unlink()

    return corrupt


def _pickled(head: Path) -> None:
    with np.load(head / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["coef"] = np.array([{"run": "code"}], dtype=object)
    np.savez(head / "arrays.npz", **arrays)


def _more_classes(doc):
    doc["predictor"]["classes"].append("Extra")
    doc["predictor"]["thresholds"].append(0.5)


def _set(path: str, value):
    """Set ``doc[a][b]...`` for ``path`` "a.b..." (list items by index)."""

    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


# (id, corruption of a saved linear head, what the message must say)
LINEAR_CASES = [
    ("unknown-param", _edit_json(_set("predictor.params.colour", "blue")), r"'colour' that a linear head does not take"),
    ("threshold-text", _edit_json(_set("predictor.thresholds.0", "high")), r"'predictor.thresholds' is .*expected a list of finite numbers"),
    ("threshold-nan", _edit_json(_set("predictor.thresholds.1", float("nan"))), r"expected a list of finite numbers"),
    ("thresholds-short", _edit_json(lambda d: d["predictor"]["thresholds"].pop()), r"'predictor.thresholds' has \d+ values but 'predictor.classes' names \d+ genres"),
    ("class-count", _edit_json(_more_classes), r"array 'coef' has shape \(\d+, \d+\), expected \(\d+, d\) \(\d+ = the genres in 'classes'\)"),
    ("at-least-one", _edit_json(_set("predictor.at_least_one", "yes")), r"'predictor.at_least_one' is 'yes', expected true or false"),
    ("json-list", _write("head.json", b"[1, 2, 3]"), r"head.json: the file holds a list, expected a JSON object"),
    ("json-broken", _write("head.json", b'{"format": 1, "predictor": '), r"head.json: it cannot be read as JSON"),
    ("predictor-text", _edit_json(_set("predictor", "linear")), r"'predictor' is a string, expected an object"),
    ("unknown-method", _edit_json(_set("predictor.method", "svm")), r"'predictor.method' is 'svm', expected one of"),
    ("arrays-missing", _remove("arrays.npz"), r"arrays.npz: the file is missing"),
    ("arrays-pickle", _pickled, r"arrays.npz: it holds pickled Python objects, which are never loaded"),
    ("arrays-garbage", _write("arrays.npz", b"not an archive"), r"arrays.npz: it is not an .npz archive"),
    ("array-text", _edit_arrays(lambda a: a.update(coef=np.full(a["coef"].shape, "x"))), r"array 'coef' holds <U1 values, expected numbers"),
    ("array-shape", _edit_arrays(lambda a: a.update(intercept=a["intercept"][:-1])), r"array 'intercept' has shape \(\d+,\), expected \(\d+,\)"),
    ("array-absent", _edit_arrays(lambda a: a.pop("intercept")), r"array 'intercept' of the linear head is missing"),
    ("array-nan", _edit_arrays(lambda a: a["coef"].fill(np.nan)), r"the arrays give scores outside 0..1"),
]  # fmt: skip


def _saved(tmp_path: Path, method: str, **params) -> Path:
    """A small head fitted on seeded data, saved as an index would keep it (heads/<name>)."""
    X, Y = _data()
    params = dict(params)
    fusion = params.pop("fusion", None)
    dims = (8, 8) if fusion else None
    pred = make_predictor(method, fusion=fusion, dims=dims, **params).fit(X, Y, classes=GENRES)
    pred.set_thresholds(np.linspace(0.2, 0.6, len(GENRES)), at_least_one=True)
    head = tmp_path / "index" / "heads" / f"{method}-{fusion or 'poster'}"
    save_predictor(pred, head, extra={"name": head.name, "method": method})
    return head


@pytest.fixture()
def linear_head(tmp_path) -> Path:
    return _saved(tmp_path, "linear")


def test_undamaged_head_loads_and_scores(linear_head):
    pred, doc = load_predictor(linear_head)
    X, _ = _data()
    assert pred.predict_proba(X[:3]).shape == (3, len(GENRES)) and doc["name"] == "linear-poster"


@pytest.mark.parametrize(
    "corrupt,expected", [c[1:] for c in LINEAR_CASES], ids=[c[0] for c in LINEAR_CASES]
)
def test_damaged_linear_head_is_refused_with_the_file_and_the_fix(linear_head, corrupt, expected):
    corrupt(linear_head)
    with pytest.raises(PredictorError, match=expected) as e:
        load_predictor(linear_head)
    msg = str(e.value)
    assert str(linear_head) in msg and ("head.json" in msg or "arrays.npz" in msg)
    assert f"{RETRAIN} {linear_head.parent.parent}" in msg


# (id, method and params of the head, corruption, what the message must say)
OTHER_CASES = [
    ("mlknn-cond-shape", ("mlknn", {"k": 5}), _edit_arrays(lambda a: a.update(cond_true=a["cond_true"][:, :-1])), r"array 'cond_true' has shape \(6, 5\), expected \(6, 6\) \(6 = k \+ 1\)"),
    ("mlknn-labels-rows", ("mlknn", {"k": 5}), _edit_arrays(lambda a: a.update(Y=a["Y"][:-3])), r"array 'Y' has shape \(\d+, 6\), expected \(120, 6\)"),
    ("knn-k-text", ("knn", {"k": 5}), _edit_json(_set("predictor.params.k", "five")), r"the head cannot score an input \(k must be a positive integer, got 'five'"),
    ("mlp-layers", ("mlp", {"hidden": 8, "epochs": 2}), _edit_arrays(lambda a: a.update(W1=a["W1"][:-1])), r"array 'W1' has shape \(7, 6\), expected \(8, 6\)"),
    ("mlp-n-layers", ("mlp", {"hidden": 8, "epochs": 2}), _edit_json(_set("predictor.state.n_layers", "2")), r"'predictor.state.n_layers' is '2', expected a positive integer"),
    ("fusion-part-array", ("linear", {"fusion": "late"}), _edit_arrays(lambda a: a.pop("plot/coef")), r"array 'plot/coef' of the linear head is missing"),
    ("fusion-weight", ("linear", {"fusion": "late"}), _edit_json(_set("predictor.state.weight", 2.0)), r"'predictor.state.weight' is 2.0, expected a number from 0 to 1"),
    ("fusion-part-thresholds", ("linear", {"fusion": "late"}), _edit_json(lambda d: d["predictor"]["state"]["parts"]["plot"]["thresholds"].pop()), r"'predictor.state.parts.plot.thresholds' has 5 values"),
    ("fusion-dims", ("linear", {"fusion": "late"}), _edit_json(_set("predictor.state.dims", [9, 7])), r"the poster part takes 8-d input but 'state.dims' \[9, 7\] gives it 9"),
]  # fmt: skip


@pytest.mark.parametrize(
    "head,corrupt,expected", [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES]
)
def test_damaged_heads_of_other_methods(tmp_path, head, corrupt, expected):
    method, params = head
    directory = _saved(tmp_path, method, **params)
    load_predictor(directory)  # loads before the damage
    corrupt(directory)
    with pytest.raises(PredictorError, match=expected) as e:
        load_predictor(directory)
    assert str(directory) in str(e.value) and RETRAIN in str(e.value)


def test_the_fix_is_the_train_command_of_the_head(tmp_path):
    directory = _saved(tmp_path, "linear", fusion="late")
    doc = json.loads((directory / "head.json").read_text())
    doc.update(name="both-heads", modality="both", fusion="late")
    doc["predictor"]["at_least_one"] = None
    (directory / "head.json").write_text(json.dumps(doc))
    with pytest.raises(PredictorError) as e:
        load_predictor(directory)
    assert str(e.value).endswith(
        f"`embedgenre train {tmp_path / 'index'} --method linear --modality both --fusion late "
        "--name both-heads`."
    )


def test_predictor_from_state_checks_without_files():
    from embedgenre.predictors.state import predictor_from_state, predictor_state

    X, Y = _data()
    desc, arrays = predictor_state(make_predictor("linear").fit(X, Y, classes=GENRES))
    desc["thresholds"] = desc["thresholds"][:2]
    with pytest.raises(PredictorError, match=r"saved predictor \(description\): 'predictor.thresh"):
        predictor_from_state(desc, arrays)


# ---------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_index(fixture_dir, tmp_path_factory):
    """12 fixture movies, posters by EfficientNet-Lite0; linear heads "linear-poster" and two to
    damage ("damaged", "aaa-damaged"), with copies of their files to restore them."""
    from embedgenre.catalog import read_catalog
    from embedgenre.heads import train_head
    from embedgenre.indexing import build_index
    from embedgenre.predictors import HeadSpec
    from embedgenre.store import GenreIndex

    tmp = tmp_path_factory.mktemp("hostile-heads")
    cat = tmp / "catalog"
    rows = copy_fixture(fixture_dir, cat)
    build_index(
        read_catalog(cat),
        tmp / "index",
        image_encoders=["cnn:efficientnet-lite0"],
        text_encoders=[],
    )
    index = GenreIndex.open(tmp / "index")
    train_head(index, HeadSpec("linear", folds=None))
    heads = {}
    for name in ("damaged", "aaa-damaged"):
        train_head(GenreIndex.open(tmp / "index"), HeadSpec("linear", folds=None), name=name)
        heads[name] = next(
            d.parent
            for d in (tmp / "index" / "heads").glob("*/head.json")
            if json.loads(d.read_text())["name"] == name
        )
    pristine = {f: f.read_bytes() for d in heads.values() for f in d.iterdir()}
    poster = str(cat / rows[0]["poster"])
    return {"index": tmp / "index", "poster": poster, "heads": heads, "pristine": pristine}


def _damage(cli_index, name: str, corrupt) -> Path:
    """Restore head ``name`` to its trained files, then apply ``corrupt`` to its folder."""
    directory = cli_index["heads"][name]
    for f in directory.iterdir():
        f.unlink()
    for f, content in cli_index["pristine"].items():
        if f.parent == directory:
            f.write_bytes(content)
    corrupt(directory)
    return directory


def _predict(cli_index, *extra):
    return runner.invoke(
        app, ["predict", cli_index["poster"], "--index", str(cli_index["index"]), *extra]
    )


HEAD_FIELD_CASES = [
    ("encoder-dim", _edit_json(_set("encoders.poster.dim", 1281)), r"the head takes \d+-d input but its 'encoders' in head.json give 1281"),
    ("modality", _edit_json(_set("modality", "sideways")), r"'modality' is 'sideways', expected one of poster, plot, both"),
    ("genres-text", _edit_json(_set("genres", "Drama")), r"'genres' is 'Drama', expected a list of names"),
]  # fmt: skip
CLI_CASES = LINEAR_CASES + HEAD_FIELD_CASES


@pytest.mark.parametrize(
    "corrupt,expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_predict_with_a_damaged_head_exits_1_without_traceback(cli_index, corrupt, expected):
    directory = _damage(cli_index, "damaged", corrupt)
    result = _predict(cli_index, "--head", "damaged")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    msg = " ".join(result.stderr.split())
    assert msg.startswith("error:") and str(directory) in msg
    assert re.search(expected, msg), msg
    assert f"{RETRAIN} {cli_index['index']}" in msg


def test_a_damaged_head_is_skipped_when_choosing_one(cli_index):
    _damage(cli_index, "aaa-damaged", _edit_json(_set("predictor.thresholds.0", "x")))
    result = _predict(cli_index, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["head"]["name"] == "linear-poster"
    assert "skipping head aaa-damaged" in " ".join(result.stderr.split())
