"""One error hierarchy, rendered by each surface in its own words: the HTTP status comes from
the error's kind (never its wording), the CLI names the option, the service the field."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from embedgenre import errors
from embedgenre.serve.problems import from_library, status_of


@pytest.mark.parametrize(
    "error, status",
    [
        (errors.UnknownItemError("no item with id 'x'"), 404),
        (errors.UnknownHeadError("No head named 'h'"), 404),
        (errors.UnknownEncoderError("unknown encoder"), 404),
        (errors.NotAnImageError("poster p: not an image"), 415),
        (errors.TooManyPixelsError("poster p: too many pixels"), 413),
        (errors.IndexLockedError("locked by pid 1"), 409),
        (errors.WeightsNotFoundError("no weights"), 503),
        (errors.PredictorError("bad plot"), 400),
        (errors.EmbedgenreError("anything else"), 400),
    ],
)
def test_the_status_comes_from_the_kind(error, status):
    assert status_of(error) == status
    # the wording does not matter: the same text under another kind gets that kind's status
    assert status_of(errors.PredictorError(str(error))) == 400


def test_every_concrete_error_is_one_kind_a_surface_knows():
    kinds = (
        errors.BadInputError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.UnavailableError,
    )
    concrete = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.EmbedgenreError)
    ]
    loose = [
        c.__name__
        for c in concrete
        if c not in (errors.EmbedgenreError, errors.IndexStoreError, errors.WriteError)
        and not issubclass(c, kinds)
        and not issubclass(c, (errors.IndexStoreError, errors.WriteError))
    ]
    assert loose == []


def test_what_fix_and_param_travel_to_the_service_and_python():
    e = errors.UnknownItemError("no item with id 'tt1';", "did you mean 'tt2'?", param="item_id")
    assert str(e) == "no item with id 'tt1'; did you mean 'tt2'?"
    assert (e.what, e.fix, e.param) == ("no item with id 'tt1';", "did you mean 'tt2'?", "item_id")
    api = from_library(e)
    assert (api.status, api.error, api.fix, api.field) == (
        404,
        "no item with id 'tt1'",
        "did you mean 'tt2'?",
        "id",  # the service's name for the field
    )
    # an error raised with one message still splits into what and fix
    api = from_library(errors.PredictorError("The plot text is empty; give a synopsis."))
    assert (api.error, api.fix, api.field) == ("The plot text is empty.", "Give a synopsis.", None)


def test_the_cli_names_its_option_for_the_parameter_at_fault(fixture_index_dir):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    result = CliRunner().invoke(
        app, ["similar", "--id", "tt0000001", "--index", str(fixture_index_dir)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --id: no item with id 'tt0000001'")
    assert "Traceback" not in result.output


# Library modules whose messages may name an option: the server's launch checks (`serve`
# options, reported to whoever started the server) and the HTTP routes, whose query
# parameters are the HTTP client's own words.
_MAY_NAME_OPTIONS = {"serve/config.py", "serve/guard.py", "serve/routes.py"}
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
_COMMAND = re.compile(r"`(embedgenre|ray|pip) [^`]*`")  # a command line to run is not an option
_PY_ARG = re.compile(r"\bpass [a-z_]+=|\b[a-z]+_[a-z_]+=|\b[a-z_]+=(\{|\[|\.|<)")


def _text(node) -> str:
    """The words of a message expression; each value formatted into it reads as X."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else ""
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) if isinstance(v, ast.Constant) else "X" for v in node.values)
    return " ".join(_text(child) for child in ast.iter_child_nodes(node))


def _library_messages():
    """(where, text) of every raise and warnings.warn in the library, the text being the
    string constants of the exception (or of the name it was built in, within the function)."""
    root = Path(__file__).resolve().parents[1] / "embedgenre"
    seen = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("serve/static"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in reversed(list(ast.walk(tree))):  # innermost functions first
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
                continue
            built = {
                t.id: n.value
                for n in ast.walk(func)
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            for node in ast.walk(func):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    exc = node.exc
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "warn":
                    exc = node
                else:
                    continue
                if (rel, node.lineno) in seen:
                    continue
                seen.add((rel, node.lineno))
                names = [n.id for n in ast.walk(exc) if isinstance(n, ast.Name) and n.id in built]
                text = " ".join([_text(exc), *(_text(built[name]) for name in names)])
                yield rel, node.lineno, text


def test_library_messages_name_no_cli_option_and_no_python_argument():
    found = []
    for rel, line, text in _library_messages():
        if rel in _MAY_NAME_OPTIONS:
            continue
        bare = _COMMAND.sub("", text)
        if _FLAG.search(bare) or _PY_ARG.search(bare):
            found.append(f"{rel}:{line}: {text[:120]}")
    assert found == []


def test_the_scan_sees_options_and_arguments():
    assert _FLAG.search("use --plot") and not _FLAG.search("ray://HOST:PORT, fp32 -- or")
    assert _PY_ARG.search("Fix: pass genre_sep=','") and _PY_ARG.search("columns={'id': 'x'}")
    assert not _PY_ARG.search("map the field to it: genres=COLUMN; PQ m=8; try m=X.")
    messages = {rel for rel, _, _ in _library_messages()}
    assert {"catalog/reader.py", "predict.py", "retrieval/query.py"} <= messages


def test_python_sees_the_keyword_and_no_option(tmp_path):
    from embedgenre.catalog import read_catalog

    (tmp_path / "movies.csv").write_text("imdb_id,title,tags\ntt0000001,A,Drama\n")
    with pytest.raises(errors.CatalogError) as e:
        read_catalog(tmp_path)
    assert e.value.param == "columns" and "--" not in str(e.value)
    assert "map the field to it: genres=COLUMN" in str(e.value)
    with pytest.raises(errors.NotFoundError) as e:
        read_catalog(tmp_path / "nope")
    assert e.value.param == "path" and isinstance(e.value, errors.CatalogError)


def _cli(*args):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_the_cli_names_the_option_of_a_catalog_error(tmp_path):
    (tmp_path / "movies.csv").write_text("movie,title,genres\nm1,A,Drama\n")
    result = _cli("index", tmp_path, "--out", tmp_path / "idx")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error: --column: ")
    assert "no 'id' column" in result.stderr and "id=COLUMN" in result.stderr
    assert not (tmp_path / "idx").exists()
    result = _cli("index", tmp_path, "--out", tmp_path / "idx", "--rare", "keep")
    assert result.exit_code == 1 and result.stderr.startswith("error: --rare: ")


def test_a_catalog_warning_names_the_option_in_one_line(tmp_path, monkeypatch):
    from embedgenre import indexing

    (tmp_path / "movies.csv").write_text(
        'imdb_id,title,genres\ntt0000001,A,"Comedy, Drama"\ntt0000002,B,"Action, War"\n'
    )
    seen = {}

    def stop(catalog, *args, **kwargs):  # the warning comes from reading; nothing to encode
        seen["genres"] = catalog.items[0].genres
        raise errors.BadInputError("stopped here")

    monkeypatch.setattr(indexing, "build_index", stop)
    result = _cli("index", tmp_path, "--out", tmp_path / "idx")
    text = " ".join(result.stderr.split())
    assert "--genre-sep: " in text and "set the genre separator to ','" in text
    assert "typer" not in text and ".py:" not in text  # no source location
    assert seen["genres"] == ("Comedy, Drama",)
