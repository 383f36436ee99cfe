"""CLIP queries from the cached export alone: no torch, open_clip or transformers in `predict`.

A tiny random CLIP (tests/_tiny_clip.py) is imported like a download, a small index is built
with it (which exports both towers and writes the export bundle), a linear head is trained, and
`embedgenre predict` runs in a fresh process that must answer without those libraries.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _catalogs import FIELDS, make_catalog
from _tiny_clip import TINY_ARCH, make_tiny_clip_checkpoint
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.encoders import create_encoder
from embedgenre.encoders.clip_tokenizer import VOCAB_FILE, ClipBpeTokenizer
from embedgenre.encoders.weights import cache_dir
from embedgenre.errors import EmbedgenreError

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

runner = CliRunner()
HEAVY = ("torch", "open_clip", "transformers", "torchvision", "sentence_transformers", "timm")

PROBE = """
import json, sys
from embedgenre.cli.app import main
sys.argv = ["embedgenre", "-q", "predict", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print("LOADED " + json.dumps({"code": code, "heavy": loaded}))
"""


@pytest.fixture(scope="module")
def clip_index(tmp_path_factory, fixture_dir):
    """(encoder name, index dir, 2 posters): 12 fixture movies indexed with a tiny CLIP imported
    into a cache of this module's own, and a linear poster head named "lin"."""
    tmp = tmp_path_factory.mktemp("clip-cold")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBEDGENRE_CACHE", str(tmp / "cache"))
        mp.setenv("EMBEDGENRE_OFFLINE", "1")
        _, ckpt = make_tiny_clip_checkpoint(tmp / "download")
        name = f"clip:{TINY_ARCH}@cold"
        assert runner.invoke(app, ["models", "import", str(ckpt), "--as", name]).exit_code == 0
        with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:12]
        make_catalog(tmp / "cat", [{k: r[k] for k in FIELDS} for r in rows])
        (tmp / "cat" / "posters").mkdir()
        for r in rows:
            (tmp / "cat" / r["poster"]).symlink_to(fixture_dir / r["poster"])
        out = tmp / "idx"
        args = ["index", str(tmp / "cat"), "--out", str(out), "--image-encoder", name,
                "--text-encoder", name]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        args = ["train", str(out), "--method", "linear", "--modality", "poster", "--name", "lin"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        yield name, out, [fixture_dir / r["poster"] for r in rows[:2]]


@pytest.fixture
def cache(clip_index, monkeypatch):
    monkeypatch.setenv("EMBEDGENRE_CACHE", str(clip_index[1].parent / "cache"))
    monkeypatch.setenv("EMBEDGENRE_OFFLINE", "1")
    return cache_dir()


def predict_in_fresh_process(*args: str) -> tuple[dict, dict]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    probe = json.loads(next(line for line in lines if line.startswith("LOADED "))[7:])
    assert probe["code"] == 0, proc.stderr[-2000:]
    answer = json.loads("\n".join(line for line in lines if not line.startswith("LOADED ")))
    return answer, probe


def test_predict_with_cached_export_imports_no_torch(clip_index, cache):
    name, out, posters = clip_index
    bundles = list((cache / "onnx").glob("*/bundle-*.json"))
    assert len(bundles) == 1, "the index run leaves one export bundle behind"

    args = [str(p) for p in posters] + ["--index", str(out), "--head", "lin", "--json"]
    answer, probe = predict_in_fresh_process(*args)
    assert probe["heavy"] == []
    assert [r["input"] for r in answer["results"]] == [str(p) for p in posters]

    # the same answer as the torch-built encoder gives in this process
    from embedgenre.predict import Predictor

    here = Predictor.open(out, head="lin").predict(posters=[str(p) for p in posters]).to_dict()
    for a, b in zip(answer["results"], here["results"]):
        assert a["genres"] == b["genres"]
        sa = {g["genre"]: g["score"] for g in a["ranking"]}
        sb = {g["genre"]: g["score"] for g in b["ranking"]}
        assert sa and sa.keys() <= sb.keys()  # the CLI shows the top genres
        assert max(abs(sa[g] - sb[g]) for g in sa) < 2e-4


def test_bundle_encoder_matches_open_clip(clip_index, cache):
    name, _, posters = clip_index
    light = create_encoder(name, purpose="query")
    full = create_encoder(name, backend="torch")
    assert light.backend_choice["by"].startswith("query") and full.backend == "torch"
    assert light.describe()["dim"] == full.describe()["dim"] == 32
    assert light.transform == full.transform
    texts = ["a poster of a horror movie", "Café &amp; crème, 1999!", ""]
    assert np.allclose(light.encode_texts(texts), full.encode_texts(texts), atol=1e-5)
    assert np.allclose(light.encode_images(posters), full.encode_images(posters), atol=1e-5)

    # a bundle that lost a file is not used: open_clip builds the model and writes it again
    bundle = next((cache / "onnx").glob("*/bundle-*.json"))
    doc = json.loads(bundle.read_text())
    (bundle.parent / doc["text_onnx"]).unlink()
    rebuilt = create_encoder(name, purpose="query")
    assert rebuilt.backend_choice["by"] == "asked" and (bundle.parent / doc["text_onnx"]).is_file()
    assert np.allclose(rebuilt.encode_texts(texts), full.encode_texts(texts), atol=1e-5)
    assert create_encoder(name, purpose="query").backend_choice["by"].startswith("query")


def test_bpe_tokenizer_matches_open_clip(fixture_dir):
    import open_clip

    reference = open_clip.get_tokenizer("ViT-B-32")
    ours = ClipBpeTokenizer(Path(open_clip.__file__).parent / VOCAB_FILE, context_length=77)
    with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["plot"] for r in rows] + [r["title"] for r in rows if r["title"]]
    texts += [
        "",
        "   spaced\t\nout   ",
        "it's they'll we'd I'M",
        "Ünïcödé, 日本の映画, emoji 🎬🍿",
        "&lt;b&gt;bold&lt;/b&gt; &amp;amp;",
        "<start_of_text> inside <end_of_text>",
        "3.14159 1999-2001 #1",
        "word " * 100,  # longer than the context: cut, ending with the end token
    ]
    expected = reference(texts).numpy()
    got = ours(texts)
    assert got.dtype == np.int64 and got.shape == expected.shape
    mismatched = [t[:40] for t, a, b in zip(texts, expected, got) if not np.array_equal(a, b)]
    assert mismatched == []
    assert got[-1, -1] == ours.end_id


def test_bpe_tokenizer_refuses_a_wrong_vocabulary(tmp_path):
    import gzip

    bad = tmp_path / VOCAB_FILE
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write("header\na b\n")
    with pytest.raises(EmbedgenreError, match=r"holds 2 merges, expected 48894"):
        ClipBpeTokenizer(bad)
    (tmp_path / "plain.gz").write_text("not gzip")
    with pytest.raises(EmbedgenreError, match=r"cannot be read"):
        ClipBpeTokenizer(tmp_path / "plain.gz")


BULK = """
import json, sys
from embedgenre.encoders import create_encoder
enc = create_encoder(sys.argv[1])  # bulk encoding, backend auto
enc.encode_pixels(enc.preprocess(__import__("PIL.Image").Image.new("RGB", (40, 60)))[None])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"backend": enc.backend, "by": enc.backend_choice.get("by"), "heavy": loaded}))
"""


@pytest.mark.parametrize("measured", ["onnx", "torch"])
def test_bulk_encoding_follows_the_cached_measurement_without_building_the_model(
    clip_index, cache, measured
):
    """Where the backend measured on this CPU is ONNX Runtime, `index` takes the export bundle
    and never imports torch or open_clip; where it is torch, the model is built as before."""
    name = clip_index[0]
    records = list((cache / "onnx").glob("*/backend-*.json"))
    assert len(records) == 1, "the index run measured the backends once"
    record = json.loads(records[0].read_text())
    record["chosen"] = measured
    records[0].write_text(json.dumps(record))
    proc = subprocess.run(
        [sys.executable, "-c", BULK, name],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["backend"] == measured and got["by"] == "cached measurement"
    if measured == "onnx":
        assert got["heavy"] == []
    else:
        assert {"torch", "open_clip"} <= set(got["heavy"])
