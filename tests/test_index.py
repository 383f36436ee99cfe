"""The index store and the incremental, crash-safe indexing pipeline.

Most tests use a small fake encoder (fast, deterministic, counts its calls) so they check the store's
logic; ``test_real_encoders_*`` and the kill-and-resume test run the packaged encoders.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _catalogs import FIELDS, make_catalog
from _fakes import Factory, build
from _kill import kill_after_chunks
from PIL import Image

from embedgenre.catalog import read_catalog
from embedgenre.errors import ConflictError, IndexStoreError, PosterError
from embedgenre.indexing import IndexOptions, Skip, build_index
from embedgenre.indexing.plan import Contents
from embedgenre.indexing.write import next_manifest
from embedgenre.store import GenreIndex
from embedgenre.vocabulary import extend


def test_build_writes_a_self_describing_index(small_catalog, tmp_path):
    root, rows = small_catalog
    out = tmp_path / "idx"
    summary = build(root, out, Factory())
    idx = GenreIndex.open(out)
    assert idx.ids == [r["imdb_id"] for r in rows]
    assert idx.manifest.complete is True
    assert {s.key for s in idx.sets} == {"poster__fake-a", "plot__fake-t"}
    poster = idx.get_set("poster")
    assert poster.vectors.shape == (20, 8) and poster.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(poster.vectors, axis=1), 1, rtol=1e-5)
    assert list(poster.rows) == list(range(20))
    # labels follow the vocabulary, row-aligned with ids
    for i, r in enumerate(rows):
        expected = set(r["genres"].split("|"))
        assert {g for g, y in zip(idx.genres, idx.labels[i]) if y} == expected
    assert [s.encoded for s in summary.sets] == [20, 20]
    # the FAISS index finds each vector as its own nearest neighbour
    scores, found = poster.search(poster.vectors[:3], k=1)
    assert list(found[:, 0]) == [0, 1, 2]


def test_rerun_on_unchanged_catalog_encodes_nothing_and_loads_no_model(small_catalog, tmp_path):
    root, _ = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())
    before = GenreIndex.open(out).get_set("poster").vectors.copy()
    again = Factory()
    summary = build(root, out, again)
    assert again.made == {}, "no encoder may be loaded when nothing changed"
    assert [(s.encoded, s.reused) for s in summary.sets] == [(0, 20), (0, 20)]
    np.testing.assert_array_equal(GenreIndex.open(out).get_set("poster").vectors, before)


def test_float16_vectors_are_kept_and_converted_without_encoding(small_catalog, tmp_path):
    root, _ = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())
    full = GenreIndex.open(out).get_set("poster").vectors.copy()

    again = Factory()
    summary = build(root, out, again, vector_dtype="float16")
    assert again.made == {}, "changing how vectors are stored must not encode anything"
    assert [(s.encoded, s.reused) for s in summary.sets] == [(0, 20), (0, 20)]
    idx = GenreIndex.open(out)
    half = idx.get_set("poster")
    assert half.vectors.dtype == np.float16 and half.dtype == "float16"
    stored = np.load(out / half.directory / "vectors.npy", mmap_mode="r")
    assert stored.dtype == np.float16
    assert all(
        s["dtype"] == "float16" for s in json.loads((out / "manifest.json").read_text())["sets"]
    )
    np.testing.assert_allclose(np.asarray(half.vectors, np.float32), full, atol=1e-3)
    scores, found = half.search(np.asarray(half.vectors[:3], np.float32), k=1)
    assert list(found[:, 0]) == [0, 1, 2]

    generation = idx.manifest.generation
    build(root, out, Factory())  # no dtype asked: the sets keep theirs, nothing is rewritten
    assert GenreIndex.open(out).manifest.generation == generation

    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    cli = CliRunner()
    res = cli.invoke(app, ["index", str(root), "--out", str(out), "--vectors", "float32"])
    assert res.exit_code == 0, res.output  # the stored rows are converted: no encoder is loaded
    res = cli.invoke(app, ["info", str(out), "--json"])
    assert {s["dtype"] for s in json.loads(res.output)["sets"]} == {"float32"}
    res = cli.invoke(app, ["index", str(root), "--out", str(out), "--vectors", "float64"])
    assert res.exit_code == 2 and "float64" in res.output
    build(root, out, Factory(), vector_dtype="float16")
    assert GenreIndex.open(out).get_set("poster").vectors.dtype == np.float16

    build(root, out, Factory(), vector_dtype="float32")
    back = GenreIndex.open(out).get_set("poster").vectors
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, full, atol=1e-3)
    with pytest.raises(IndexStoreError, match=r"unknown vector dtype 'int8'.*float32, float16"):
        build(root, out, Factory(), vector_dtype="int8")
    doc = json.loads((out / "manifest.json").read_text())
    doc["sets"][0]["dtype"] = "float64"  # a manifest naming a dtype vectors are never stored in
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IndexStoreError, match=r"sets\[0\]\.dtype.*float32.*float16"):
        GenreIndex.open(out)


def test_incremental_add_change_remove(small_catalog, tmp_path, fixture_dir):
    root, rows = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())
    old = GenreIndex.open(out)
    old_vec = {
        i: v.copy() for i, v in zip(old.get_set("poster").ids, old.get_set("poster").vectors)
    }

    with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
        extra = list(csv.DictReader(f))[20:25]
    for r in extra:
        shutil.copy(fixture_dir / r["poster"], root / r["poster"])
    rows = rows[2:] + [{k: r[k] for k in FIELDS} for r in extra]  # drop 2, add 5
    rows[0] = {**rows[0], "plot": rows[0]["plot"] + " (director's cut)"}  # change one plot
    rows[1] = {**rows[1], "title": rows[1]["title"] + " II"}  # a title is part of the plot text
    make_catalog(root, rows)

    f2 = Factory()
    summary = build(root, out, f2)
    by = {s.modality: s for s in summary.sets}
    assert (by["poster"].encoded, by["poster"].reused) == (5, 18)
    assert (by["plot"].encoded, by["plot"].reused) == (7, 16)
    assert f2.made["fake:a"].images_seen == 5
    idx = GenreIndex.open(out)
    assert idx.ids == [r["imdb_id"] for r in rows]
    poster = idx.get_set("poster")
    assert list(poster.ids) == idx.ids
    for i, v in zip(poster.ids, poster.vectors):
        if i in old_vec:
            np.testing.assert_array_equal(v, old_vec[i])
    # the generation readers may still be on is kept until the next write, older ones are gone
    assert len(list((out / "embeddings").iterdir())) == 4
    build(root, out, Factory())  # unchanged: commits nothing, removes the previous generation
    assert len(list((out / "embeddings").iterdir())) == 2
    assert len(list(out.glob("items-*.parquet"))) == 1


def _write_bad_posters(root: Path) -> dict[str, str]:
    """Create every kind of bad or odd poster; returns id -> expected outcome."""
    p = root / "posters"
    good = Image.new("RGB", (60, 90), (200, 30, 30))
    good.save(p / "tt9000001.jpg")
    data = (p / "tt9000001.jpg").read_bytes()
    (p / "tt9000002.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (p / "tt9000003.jpg").write_bytes(b"")  # zero bytes
    (p / "tt9000004.jpg").write_text("this is not an image\n")  # text named .jpg
    Image.new("CMYK", (60, 90), (10, 20, 30, 40)).save(p / "tt9000006.jpg")
    Image.new("L", (60, 90), 128).save(p / "tt9000007.jpg")
    Image.new("RGBA", (60, 90), (0, 0, 255, 100)).save(p / "tt9000008.png")
    Image.new("P", (60, 90), 3).save(p / "tt9000009.png")
    Image.new("1", (12000, 12000)).save(p / "tt9000010.png")  # 144 Mpx: over the bomb limit
    return {
        "tt9000001": "ok",
        "tt9000002": "skip",
        "tt9000003": "skip",
        "tt9000004": "skip",
        "tt9000005": "skip",
        "tt9000006": "ok",
        "tt9000007": "ok",
        "tt9000008": "ok",
        "tt9000009": "ok",
        "tt9000010": "skip",
    }


def _bad_poster_catalog(root: Path) -> dict[str, str]:
    """A catalog at ``root`` of the posters of :func:`_write_bad_posters`, each with a plot."""
    (root / "posters").mkdir(parents=True)
    expected = _write_bad_posters(root)
    ext = {"tt9000008": "png", "tt9000009": "png", "tt9000010": "png"}
    rows = [
        {
            "imdb_id": i,
            "title": i,
            "genres": "Drama",
            "plot": f"plot {i}",
            "poster": f"posters/{i}.{ext.get(i, 'jpg')}",
        }
        for i in expected
    ]
    make_catalog(root, rows)
    return expected


def test_bad_posters_are_skipped_listed_and_not_retried(tmp_path):
    root = tmp_path / "cat"
    expected = _bad_poster_catalog(root)
    out = tmp_path / "idx"
    summary = build(root, out, Factory())
    skipped = {r.id for r in summary.skipped}
    assert skipped == {i for i, e in expected.items() if e == "skip"}
    reasons = {r.id: r.reason for r in summary.skipped}
    assert "not found" in reasons["tt9000005"]
    assert "decompression" in reasons["tt9000010"].lower() or "pixels" in reasons["tt9000010"]
    idx = GenreIndex.open(out)
    assert {r["id"] for r in idx.skipped} == skipped
    assert sorted(idx.ids[r] for r in idx.get_set("poster").rows) == sorted(
        i for i, e in expected.items() if e == "ok"
    )
    assert len(idx.get_set("plot").rows) == 10  # plots of skipped posters are still indexed
    again = Factory()
    build(root, out, again)
    assert again.made == {}, "unreadable posters with unchanged bytes are not retried"

    with pytest.raises(PosterError, match="strict mode makes any unreadable poster fatal") as e:
        build(root, tmp_path / "strict", Factory(), strict=True)
    assert e.value.param == "strict"


def test_skips_are_typed_and_written_as_the_skip_list_and_json_summary(tmp_path):
    root = tmp_path / "cat"
    _bad_poster_catalog(root)
    out = tmp_path / "idx"
    summary = build(root, out, Factory())
    assert summary.skipped and all(isinstance(s, Skip) for s in summary.skipped)
    by_id = {s.id: s for s in summary.skipped}
    assert by_id["tt9000005"].hash is None  # never read: no hash, so retried once it appears
    assert any(s.hash for s in summary.skipped)  # read but not decodable: hashed, not retried
    idx = GenreIndex.open(out)
    on_disk = json.loads((out / idx.manifest.skipped_file).read_text())
    doc = json.loads(json.dumps(summary.to_dict()))
    assert doc["skipped"] == on_disk == idx.skipped
    assert "hash" not in on_disk[[r["id"] for r in on_disk].index("tt9000005")]
    assert [Skip.of(r) for r in on_disk] == summary.skipped


def test_index_options_are_checked_before_the_index_is_touched(small_catalog, tmp_path):
    root, _ = small_catalog
    with pytest.raises(IndexStoreError, match="unknown vector dtype 'float8'.*float16"):
        IndexOptions(vector_dtype="float8")
    out = tmp_path / "idx"
    with pytest.raises(IndexStoreError, match="unknown vector dtype"):
        build(root, out, Factory(), vector_dtype="float8")
    assert not out.exists()
    options = IndexOptions(image_encoders=["fake:a"], text_encoders=[], index_memory="1GiB")
    assert options.image_encoders == ("fake:a",) and options.text_encoders == ()
    assert options.memory == 1 << 30


def test_the_next_manifest_is_built_without_writing_a_file(small_catalog, tmp_path):
    root, rows = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())
    idx = GenreIndex.open(out)
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    wanted = [(e["modality"], e["name"]) for e in idx.manifest.encoders]
    sets = list(idx.manifest.sets)
    gen = idx.manifest.generation + 1

    def manifest_for(catalog_root):
        catalog = read_catalog(catalog_root)
        return next_manifest(
            idx.manifest,
            gen,
            Contents.of(catalog),
            wanted,
            sets,
            vocabulary=extend(
                idx.manifest.genres, catalog.genre_counts(), catalog.genres
            ).vocabulary,
            skips=[],
            old_skips=[],
        )

    assert manifest_for(root) is None  # the index already says exactly this
    make_catalog(root, rows[:-1])
    changed = manifest_for(root)
    assert changed.items_file == f"items-{gen}.parquet" and changed.counts["items"] == 19
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files


def test_asking_an_index_for_other_encoders_is_refused_unless_added(small_catalog, tmp_path):
    root, _ = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())
    with pytest.raises(IndexStoreError, match=r"built with poster:fake:a.*add the new") as e:
        build(root, out, Factory(), image_encoders=["fake:b"])
    assert e.value.param == "add" and isinstance(e.value, ConflictError)
    summary = build(root, out, Factory(), image_encoders=["fake:b"], add=True)
    assert {(s.encoder, s.encoded) for s in summary.sets} == {
        ("fake:a", 0),
        ("fake:t", 0),
        ("fake:b", 20),
    }
    idx = GenreIndex.open(out)
    assert idx.get_set("poster").encoder == "fake:a"  # the first set stays the default
    assert idx.get_set("poster", "fake:b").rows.tolist() == list(range(20))


def test_changed_encoder_dimension_is_refused(small_catalog, tmp_path):
    root, rows = small_catalog
    out = tmp_path / "idx"
    build(root, out, Factory())
    rows[0] = {**rows[0], "plot": "a new plot"}
    make_catalog(root, rows)
    with pytest.raises(IndexStoreError, match=r"dim 16.*dim 8.*new index"):
        build(root, out, Factory(dims={"fake:t": 16}))
    GenreIndex.open(out)  # the refused run left a readable index


def _record_preprocessing(out: Path, key: str, preprocessing: dict) -> None:
    """Make the index say its set ``key`` was encoded with ``preprocessing``."""
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    entry = next(e for e in manifest["sets"] if e["key"] == key)
    entry["encoder"]["preprocessing"] = preprocessing
    path.write_text(json.dumps(manifest))


def test_changed_image_preprocessing_re_encodes_the_posters(small_catalog, tmp_path, caplog):
    """A set encoded with another transform than the encoder uses now is encoded again, so
    old and new poster vectors are never mixed; the plots are left alone."""
    from embedgenre.encoders import preprocessing

    root, _ = small_catalog
    out = tmp_path / "idx"
    lite0 = "cnn:efficientnet-lite0"  # a registry name, so its transform is known; fake vectors
    build(root, out, Factory(), image_encoders=[lite0])
    key = GenreIndex.open(out).get_set("poster").key
    _record_preprocessing(out, key, preprocessing(lite0))
    summary = build(root, out, Factory(), image_encoders=[lite0])
    assert [(s.encoded, s.reused) for s in summary.sets] == [(0, 20), (0, 20)]

    centre_crop = {**preprocessing(lite0), "resize_mode": "shortest", "crop_pct": 0.875}
    del centre_crop["height"]
    _record_preprocessing(out, key, centre_crop)
    with caplog.at_level("WARNING", logger="embedgenre.indexing"):
        summary = build(root, out, Factory(), image_encoders=[lite0])
    assert [(s.encoded, s.reused) for s in summary.sets] == [(20, 0), (0, 20)]
    assert "prepares images differently" in caplog.text
    assert len(GenreIndex.open(out).get_set("poster").rows) == 20


def test_open_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(IndexStoreError, match="does not exist.*embedgenre index"):
        GenreIndex.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexStoreError, match="not an embedgenre index"):
        GenreIndex.open(tmp_path / "empty")
    (tmp_path / "partial" / ".partial").mkdir(parents=True)
    with pytest.raises(IndexStoreError, match="resume"):
        GenreIndex.open(tmp_path / "partial")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{ not json")
    with pytest.raises(IndexStoreError, match="damaged"):
        GenreIndex.open(tmp_path / "bad")


def test_search_honours_missing_neighbour_contract(small_catalog, tmp_path):
    root, _ = small_catalog
    build(root, tmp_path / "idx", Factory())
    s = GenreIndex.open(tmp_path / "idx").get_set("poster")
    scores, rows = s.search(s.vectors[:2], k=25)
    assert rows.shape == (2, 25)
    assert (rows[:, 20:] == -1).all() and np.isneginf(scores[:, 20:]).all()
    with pytest.raises(IndexStoreError, match="dim 3"):
        s.search(np.ones((1, 3), np.float32), k=1)


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_kill_mid_run_loses_nothing_and_resumes(tmp_path, fixture_dir):
    """A real `embedgenre index` subprocess killed mid-run; the rerun finishes the job."""
    out = tmp_path / "idx"
    cmd = [
        sys.executable,
        "-m",
        "embedgenre.cli.app",
        "index",
        str(fixture_dir),
        "--out",
        str(out),
        "--image-encoder",
        "cnn:efficientnet-lite0",
        "--text-encoder",
        "st:all-MiniLM-L6-v2",
        "--batch-size",
        "8",
        "--chunk-size",
        "16",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    partial = out / ".partial" / "poster__cnn-efficientnet-lite0"
    done_before = kill_after_chunks(proc, partial, chunks=2, timeout=240)
    assert done_before >= 2
    idx = GenreIndex.open(out)  # the killed run left an index that opens
    assert idx.manifest.complete is False

    summary = build_index(
        read_catalog(fixture_dir),
        out,
        image_encoders=["cnn:efficientnet-lite0"],
        text_encoders=["st:all-MiniLM-L6-v2"],
    )
    poster = next(s for s in summary.sets if s.modality == "poster")
    assert poster.resumed >= 16 * done_before
    assert poster.resumed + poster.encoded == 110
    idx = GenreIndex.open(out)
    assert idx.manifest.complete is True
    assert not (out / ".partial").exists()
    assert len(idx.get_set("poster").rows) == 110 and len(idx.get_set("plot").rows) == 110


def test_real_encoders_cli_json_and_info(fixture_index_dir):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    res = CliRunner().invoke(app, ["info", str(fixture_index_dir), "--json"])
    assert res.exit_code == 0, res.output
    desc = json.loads(res.stdout)
    assert desc["counts"]["items"] == 110
    by = {s["modality"]: s for s in desc["sets"]}
    assert by["poster"]["encoder"] == "cnn:efficientnet-lite0" and by["poster"]["dim"] == 1280
    # MiniLM's 384 dims + an LSA of the 110 plots (at most 109 components)
    assert by["plot"]["encoder"] == "hybrid:all-MiniLM-L6-v2" and by["plot"]["dim"] == 384 + 109
    assert sum(desc["genres"].values()) >= 110


def test_cli_reports_catalog_errors_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    root = tmp_path / "cat"
    root.mkdir()
    (root / "movies.csv").write_text("imdb_id,title\ntt0000001,A\n")
    res = CliRunner().invoke(app, ["index", str(root), "--out", str(tmp_path / "idx")])
    assert res.exit_code == 1
    assert "genres" in res.stderr and "Traceback" not in res.output + res.stderr


def test_catalog_without_plots_writes_only_a_poster_set(small_catalog, tmp_path):
    root, rows = small_catalog
    make_catalog(root, [{**r, "plot": ""} for r in rows])
    summary = build(root, tmp_path / "idx", Factory())
    assert [(s.modality, s.count) for s in summary.sets] == [("poster", 20)]
    idx = GenreIndex.open(tmp_path / "idx")
    with pytest.raises(IndexStoreError, match="no plot embeddings"):
        idx.get_set("plot")
    assert build(root, tmp_path / "idx", Factory()).sets[0].reused == 20


def test_clip_checkpoint_imported_then_used_to_index(small_catalog, tmp_path, monkeypatch):
    """CLIP through a user's path: checkpoint -> `models import` -> `index` -> text in the same space."""
    from _tiny_clip import make_tiny_clip_checkpoint
    from typer.testing import CliRunner

    from embedgenre.cli.app import app
    from embedgenre.encoders import create_encoder

    monkeypatch.setenv("EMBEDGENRE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EMBEDGENRE_OFFLINE", "1")
    _, ckpt = make_tiny_clip_checkpoint(tmp_path / "download")
    name = "clip:TinyCLIP-test@mine"
    runner = CliRunner()
    res = runner.invoke(app, ["models", "import", str(ckpt), "--as", name])
    assert res.exit_code == 0, res.output
    root, _ = small_catalog
    out = tmp_path / "idx"
    res = runner.invoke(
        app,
        [
            "index",
            str(root),
            "--out",
            str(out),
            "--image-encoder",
            name,
            "--text-encoder",
            name,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    idx = GenreIndex.open(out)
    poster, plot = idx.get_set("poster"), idx.get_set("plot")
    assert poster.encoder == plot.encoder == name and poster.dim == 32
    assert poster.space == plot.space  # image and text towers trained together
    text = create_encoder(name).encode_texts(["a poster of a horror movie"])
    scores, rows = poster.search(text, k=3)
    assert rows.shape == (1, 3) and (rows >= 0).all() and np.isfinite(scores).all()
    assert idx.manifest.sets[0].encoder.extra["family"] == "clip"


def test_the_skip_summary_agrees_with_itself_and_names_each_path_once(tmp_path, capsys, caplog):
    from embedgenre.cli.index import print_summary

    root = tmp_path / "cat"
    expected = _bad_poster_catalog(root)
    with caplog.at_level("INFO", logger="embedgenre"):
        summary = build(root, tmp_path / "idx", Factory())
    bad = sum(e == "skip" for e in expected.values())
    poster = next(s for s in summary.sets if s.modality == "poster")
    # every count says the same: rows + skipped = the catalog's posters
    assert poster.skipped == len(summary.skipped) == bad
    assert poster.count == summary.with_poster == len(expected) - bad
    # the log says how many of those it tried to encode could not be read
    encoding = next(r.getMessage() for r in caplog.records if "encoding" in r.getMessage())
    failed = next(r.getMessage() for r in caplog.records if "could not be read" in r.getMessage())
    tried = int(encoding.split("encoding ")[1].split()[0])
    assert f"of the {tried} posters could not be read" in failed
    assert int(failed.split(": ")[1].split()[0]) == tried - poster.count
    print_summary(summary)
    out = capsys.readouterr().out
    assert f"{len(expected) - bad} posters ({bad} skipped)" in out
    assert f"{bad} poster(s) skipped" in out
    for rec in summary.skipped:
        line = next(x for x in out.splitlines() if rec.id in x and rec.path[-12:] in x)
        assert line.count("tt9000") == 2  # the id, and the path once (not again in the reason)


def test_an_encoder_whose_weights_are_missing_fails_before_anything_is_written(
    small_catalog, tmp_path, monkeypatch
):
    from embedgenre.errors import WeightsNotFoundError

    root, _ = small_catalog
    monkeypatch.setenv("EMBEDGENRE_OFFLINE", "1")
    monkeypatch.setenv("EMBEDGENRE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "idx"
    with pytest.raises(WeightsNotFoundError, match="hub: not tried") as e:
        build_index(read_catalog(root), out, image_encoders=["clip:ViT-B-16@openai"])
    assert e.value.param == "image_encoders"
    assert not out.exists()  # no half-built index
