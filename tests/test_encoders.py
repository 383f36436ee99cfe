"""Encoders with real packaged weights on the shared fixture, the registry, errors, ONNX backend.

The embedgenre cache points at a temporary directory for the whole module (ONNX exports go there),
and the machine is treated as offline: no test downloads anything.
"""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest

from embedgenre.encoders import (
    create_encoder,
    default_image_encoder_name,
    default_text_encoder_name,
    list_encoders,
    onnx_runtime,
)
from embedgenre.errors import EmbedgenreError, UnknownEncoderError, WeightsNotFoundError

LITE0 = "cnn:efficientnet-lite0"
MINILM = "st:all-MiniLM-L6-v2"


@pytest.fixture(scope="module", autouse=True)
def offline_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("egcache")
        mp.setenv("EMBEDGENRE_CACHE", str(cache))
        mp.setenv("EMBEDGENRE_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache


@pytest.fixture(scope="module")
def posters(fixture_dir):
    return sorted((fixture_dir / "posters").glob("*.jpg"))[:12]


@pytest.fixture(scope="module")
def rows(fixture_dir):
    with open(fixture_dir / "movies.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def lite0_onnx():
    return create_encoder(LITE0, backend="onnx")


@pytest.fixture(scope="module")
def lite0_torch():
    return create_encoder(LITE0, backend="torch")


@pytest.fixture(scope="module")
def minilm_onnx():
    return create_encoder(MINILM, backend="onnx")


@pytest.fixture(scope="module")
def minilm_torch():
    return create_encoder(MINILM, backend="torch")


def _check_embeddings(v: np.ndarray, n: int, dim: int) -> None:
    assert v.shape == (n, dim)
    assert v.dtype == np.float32
    assert v.flags.c_contiguous
    assert np.all(np.isfinite(v))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# -- registry ------------------------------------------------------------------------------------
def test_list_encoders_reports_packaged_weights_without_loading():
    specs = {s.name: s for s in list_encoders()}
    for name in (LITE0, "cnn:efficientnet-lite1", "cnn:efficientnet-lite2", MINILM):
        assert specs[name].available and specs[name].source == "packaged", name
    assert specs[LITE0].dim == 1280 and specs[LITE0].modalities == ("image",)
    assert specs[MINILM].dim == 384 and specs[MINILM].modalities == ("text",)
    clip = specs["clip:ViT-B-32@laion2b_s34b_b79k"]
    assert clip.modalities == ("image", "text") and clip.dim == 512 and not clip.available
    for name in (
        "timm:resnet50.a1_in1k",
        "timm:mobilenetv2_100.ra_in1k",
        "timm:densenet201.tv_in1k",
        "timm:resnetv2_50x1_bit.goog_in21k",
    ):
        assert not specs[name].available and specs[name].source is None, name


def test_list_encoders_pattern():
    names = [s.name for s in list_encoders("cnn:*")]
    assert names == ["cnn:efficientnet-lite0", "cnn:efficientnet-lite1", "cnn:efficientnet-lite2"]
    assert [s.family for s in list_encoders("timm:*")] == ["timm"] * 4


def test_unknown_family_lists_valid_families():
    with pytest.raises(
        UnknownEncoderError, match=r"unknown encoder 'vgg:16'.*cnn, st, hybrid, clip, timm"
    ):
        create_encoder("vgg:16")
    with pytest.raises(UnknownEncoderError, match=r"unknown encoder 'resnet50'"):
        create_encoder("resnet50")


def test_unknown_model_in_family():
    with pytest.raises(UnknownEncoderError, match=r"cnn family has efficientnet-lite0"):
        create_encoder("cnn:efficientnet-b7")
    with pytest.raises(UnknownEncoderError, match=r"'notanet' is not a timm architecture"):
        create_encoder("timm:notanet")
    with pytest.raises(UnknownEncoderError, match=r"clip:<arch>@<pretrained tag"):
        create_encoder("clip:ViT-B-32")


def test_missing_weights_error_names_places_and_fix():
    with pytest.raises(WeightsNotFoundError) as info:
        create_encoder("timm:resnet50.a1_in1k")
    msg = str(info.value)
    assert "'timm:resnet50.a1_in1k'" in msg
    assert "embedgenre cache" in msg and "Hugging Face cache (timm/resnet50.a1_in1k)" in msg
    assert "hub: not tried (offline" in msg
    assert "embedgenre models import model.safetensors --as timm:resnet50.a1_in1k" in msg
    with pytest.raises(
        WeightsNotFoundError,
        match=r"clip:ViT-B-32@laion2b_s34b_b79k.*Searched.*"
        r"laion/CLIP-ViT-B-32-laion2B-s34B-b79K.*models import",
    ):
        create_encoder("clip:ViT-B-32@laion2b_s34b_b79k")
    with pytest.raises(WeightsNotFoundError, match=r"local file: /no/such/w\.pth"):
        create_encoder("cnn:efficientnet-lite0@/no/such/w.pth")


def test_default_names_fall_back_loudly(caplog, monkeypatch):
    from embedgenre.encoders import defaults

    monkeypatch.setattr(defaults, "_told_clip_missing", [])
    with caplog.at_level(logging.DEBUG, logger="embedgenre"):
        assert default_image_encoder_name() == LITE0
        assert default_image_encoder_name() == LITE0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # one short line, once per process; how to add CLIP at debug level
    assert warned == [f"CLIP absent: posters use {LITE0} (`embedgenre models`)"]
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in caplog.text
    caplog.clear()
    assert default_text_encoder_name() == "hybrid:all-MiniLM-L6-v2"
    assert default_text_encoder_name(plots=500) == "hybrid:all-MiniLM-L6-v2"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embedgenre"):
        assert default_text_encoder_name(plots=1) == MINILM  # too few plots to fit words on
    assert "1 plot(s)" in caplog.text


def test_cuda_asked_but_absent_is_an_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(EmbedgenreError, match=r"device 'cuda' was asked for but no CUDA GPU"):
        create_encoder(LITE0, device="cuda")
    with pytest.raises(EmbedgenreError, match=r"unknown backend 'tensorrt'"):
        create_encoder(LITE0, backend="tensorrt")


# -- EfficientNet-Lite ---------------------------------------------------------------------------
def test_lite0_on_fixture_posters(lite0_onnx, posters):
    v = lite0_onnx.encode_images(posters, batch_size=5)
    _check_embeddings(v, len(posters), 1280)
    assert lite0_onnx.backend == "onnx" and lite0_onnx.space == LITE0
    again = lite0_onnx.encode_images(posters[:3])
    assert np.allclose(again, v[:3], atol=1e-6)  # deterministic and batch-size independent
    sims = v @ v.T
    assert sims[~np.eye(len(v), dtype=bool)].max() < 0.999  # distinct posters, distinct vectors


def test_lite0_onnx_matches_torch(lite0_onnx, lite0_torch, posters):
    a = lite0_onnx.encode_images(posters[:6])
    b = lite0_torch.encode_images(posters[:6])
    assert np.min(np.sum(a * b, axis=1)) > 0.9999


def test_preprocess_and_encode_pixels_contract(lite0_onnx, posters):
    from embedgenre.images import load_image

    x = lite0_onnx.preprocess(load_image(posters[0]))
    assert x.shape == (3, 288, 224) and x.dtype == np.float32  # the whole poster, 224 x 288
    assert -1.0 - 1e-5 <= x.min() and x.max() <= 1.0 + 1e-5  # [-1, 1] input scaling
    v = lite0_onnx.encode_pixels(np.stack([x, x]))
    _check_embeddings(v, 2, 1280)
    assert np.allclose(v[0], lite0_onnx.encode_images(posters[:1])[0], atol=1e-6)
    with pytest.raises(EmbedgenreError, match=r"expects an array of shape \(n, 3, H, W\)"):
        lite0_onnx.encode_pixels(x)
    with pytest.raises(EmbedgenreError, match=r"has no text tower"):
        lite0_onnx.encode_texts(["a horror movie"])


def test_lite0_imagenet_predictions_are_sensible():
    """The classifier on the packaged weights, fed by our transform, names a flower a daisy."""
    import torch
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from torchvision.models import ResNet50_Weights

    from embedgenre.encoders.cnn import _packaged_path, build_model, transform_for

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # metadata only, no download
    model = build_model("efficientnet-lite0", _packaged_path("efficientnet-lite0"))
    x = transform_for("efficientnet-lite0")(Image.fromarray(load_sample_image("flower.jpg")))
    with torch.no_grad():
        top5 = model(torch.from_numpy(x)[None]).topk(5).indices[0].tolist()
    assert "daisy" in [categories[i] for i in top5]


def test_describe_for_manifest(lite0_onnx):
    d = lite0_onnx.describe()
    assert d["name"] == LITE0 and d["family"] == "cnn" and d["dim"] == 1280
    assert d["preprocessing"]["mean"] == (0.5, 0.5, 0.5) and d["preprocessing"]["size"] == 224
    assert d["backend"] == "onnx" and d["weights"]["source"] == "packaged"
    assert "torch" in d["versions"] and "onnxruntime" in d["versions"]


def test_onnx_export_is_cached_and_reused(monkeypatch, lite0_onnx, posters):
    def no_export(*a, **k):
        raise AssertionError("exported again although a cached ONNX file matches")

    monkeypatch.setattr(onnx_runtime, "export_onnx", no_export)
    again = create_encoder(LITE0, backend="onnx", threads=1)
    assert np.allclose(
        again.encode_images(posters[:2]), lite0_onnx.encode_images(posters[:2]), atol=1e-6
    )


def test_onnx_cache_key_changes_with_weights_and_versions(monkeypatch):
    a = onnx_runtime.onnx_path("cnn:x", {"weights": "aaaa"})
    assert a == onnx_runtime.onnx_path("cnn:x", {"weights": "aaaa"})
    assert a != onnx_runtime.onnx_path("cnn:x", {"weights": "bbbb"})
    monkeypatch.setattr(onnx_runtime, "package_versions", lambda *n: {"torch": "9.9"})
    assert a != onnx_runtime.onnx_path("cnn:x", {"weights": "aaaa"})


def test_ort_threads_override(monkeypatch):
    monkeypatch.setenv("EMBEDGENRE_ORT_THREADS", "1")
    assert onnx_runtime.ort_threads() == 1
    assert onnx_runtime.ort_threads(3) == 3
    monkeypatch.delenv("EMBEDGENRE_ORT_THREADS")
    assert onnx_runtime.ort_threads() == onnx_runtime.available_cores()


# -- MiniLM --------------------------------------------------------------------------------------
def _plots(rows, want, avoid):
    out = []
    for r in rows:
        g = set(r["genres"].split("|"))
        if want <= g and not (g & avoid) and r["plot"]:
            out.append(r["plot"])
    return out


def test_minilm_semantics_on_fixture_plots(minilm_onnx, rows):
    horror = _plots(rows, {"Horror"}, {"Comedy", "Romance"})
    romcom = _plots(rows, {"Comedy", "Romance"}, {"Horror"})
    assert len(horror) >= 3 and len(romcom) >= 3
    prompts = minilm_onnx.encode_texts(["a horror movie", "a romantic comedy"])
    h = minilm_onnx.encode_texts(horror) @ prompts.T
    r = minilm_onnx.encode_texts(romcom) @ prompts.T
    # Short prompts against synopses are noisy per movie; on average and by majority they agree.
    assert h[:, 0].mean() > h[:, 1].mean() and r[:, 1].mean() > r[:, 0].mean()
    assert np.mean(h[:, 0] > h[:, 1]) > 0.5 and np.mean(r[:, 1] > r[:, 0]) > 0.5
    ghost = minilm_onnx.encode_texts(
        ["A family is terrorised by a ghost haunting their new house."]
    )
    assert (ghost @ prompts.T)[0, 0] > (ghost @ prompts.T)[0, 1] + 0.1


def test_minilm_contract_and_order(minilm_onnx, rows):
    texts = [r["plot"] for r in rows[:20]] + ["short", "a horror movie"]
    v = minilm_onnx.encode_texts(texts, batch_size=7)
    _check_embeddings(v, len(texts), 384)
    one_by_one = np.stack([minilm_onnx.encode_texts([t])[0] for t in texts[-4:]])
    assert np.allclose(v[-4:], one_by_one, atol=1e-5)  # sorted batching restores input order
    with pytest.raises(EmbedgenreError, match=r"got one string; wrap it"):
        minilm_onnx.encode_texts("a horror movie")
    with pytest.raises(EmbedgenreError, match=r"has no image tower"):
        minilm_onnx.encode_images([])


def test_minilm_onnx_matches_sentence_transformers(minilm_onnx, minilm_torch, rows):
    texts = [r["plot"] for r in rows[:16]] + ["a horror movie", "a romantic comedy"]
    a = minilm_onnx.encode_texts(texts)
    b = minilm_torch.encode_texts(texts)
    assert minilm_torch.backend == "torch"
    assert np.min(np.sum(a * b, axis=1)) > 0.9999


@pytest.mark.slow  # a model fitted or a process started: left out of test-fast
def test_text_backend_is_measured_for_bulk_and_cached(minilm_onnx, rows, monkeypatch):
    from embedgenre.encoders import calibration

    bulk = create_encoder(MINILM)  # backend "auto", bulk encoding: both backends timed
    choice = bulk.backend_choice
    assert choice["by"] == "measured now"
    rates = choice["items_per_s"]
    assert set(rates) == {"onnx", "torch"} and all(v > 0 for v in rates.values())
    assert bulk.backend == choice["chosen"] == max(rates, key=rates.get)
    texts = [r["plot"] for r in rows[:8]]
    assert np.min(np.sum(bulk.encode_texts(texts) * minilm_onnx.encode_texts(texts), 1)) > 0.9999

    def no_measuring(*a, **k):
        raise AssertionError("measured again although a measurement is cached")

    monkeypatch.setattr(calibration, "measure", no_measuring)
    again = create_encoder(MINILM)
    assert again.backend_choice["by"] == "cached measurement"
    assert again.backend == bulk.backend
    assert create_encoder(MINILM, purpose="query").backend == "onnx"  # loads fastest


def test_minilm_tokenizer_gives_transformers_ids_without_importing_it(rows, tmp_path):
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from embedgenre.encoders.text import FastTokenizer, _model_inputs, _packaged

    model_dir = _packaged("all-MiniLM-L6-v2")
    ours = FastTokenizer(model_dir / "tokenizer.json", 256)
    theirs = AutoTokenizer.from_pretrained(str(model_dir))
    plots = [r["plot"] for r in rows if r["plot"]]
    texts = plots + [
        "",
        "Café, naïve résumé — Ünïcödé & emoji 🎬",
        "word " * 400,  # past max_length: truncated
        "中文电影海报",
        "A\tB\nC  D",
    ]
    assert _model_inputs(model_dir) == ["input_ids", "attention_mask", "token_type_ids"]
    for start in range(0, len(texts), 16):
        batch = texts[start : start + 16]
        got = ours(batch)
        want = theirs(batch, padding=True, truncation=True, max_length=256, return_tensors="np")
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert ours(["word " * 400])["input_ids"].shape == (1, 256)
    code = (
        "import sys\n"
        "from embedgenre.encoders import create_encoder\n"
        f"e = create_encoder({MINILM!r}, backend='onnx')\n"
        "e.encode_texts(['a ghost story'])\n"
        "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- timm through a local checkpoint file ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_timm_file(tmp_path_factory):
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("timm") / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(path))
    return path


def test_timm_local_checkpoint_both_backends(tiny_timm_file, posters):
    name = f"timm:test_resnet@{tiny_timm_file}"
    a = create_encoder(name, backend="onnx")
    b = create_encoder(name, backend="torch")
    assert a.weights_source == "local file" and a.dim == b.dim > 0
    va, vb = a.encode_images(posters[:3]), b.encode_images(posters[:3])
    _check_embeddings(va, 3, a.dim)
    assert np.min(np.sum(va * vb, axis=1)) > 0.9999
    # the file's weights were loaded, not a fresh random init
    from safetensors.torch import load_file

    from embedgenre.encoders.timm_models import build_model

    net, saved = build_model("test_resnet", tiny_timm_file), load_file(str(tiny_timm_file))
    for key, value in net.state_dict().items():
        if key in saved and value.is_floating_point():
            assert np.array_equal(value.numpy(), saved[key].numpy()), key


def test_timm_wrong_weights_file_is_refused(tmp_path):
    import torch

    bad = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(EmbedgenreError, match=r"cannot be loaded into timm model 'test_resnet'"):
        create_encoder(f"timm:test_resnet@{bad}")
