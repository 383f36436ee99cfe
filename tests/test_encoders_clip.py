"""CLIP through the path a real download takes: checkpoint file -> `models import` -> name.

The model is a tiny random-initialised open_clip config (tests/_tiny_clip.py), so only loading,
shapes and the shared space are checked here, never semantics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny_clip import TINY_ARCH, TINY_CONFIG, make_tiny_clip_checkpoint
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.encoders import create_encoder, list_encoders
from embedgenre.errors import EmbedgenreError, WeightsNotFoundError

runner = CliRunner()


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDGENRE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EMBEDGENRE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


@pytest.fixture
def posters(fixture_dir):
    return sorted((fixture_dir / "posters").glob("*.jpg"))[:4]


def test_import_then_resolve_by_name(tmp_path, posters, offline_cache):
    _, ckpt = make_tiny_clip_checkpoint(tmp_path / "download")
    name = f"clip:{TINY_ARCH}@mytag"
    with pytest.raises(WeightsNotFoundError, match=r"clip:TinyCLIP-test@mytag.*models import"):
        create_encoder(name)

    result = runner.invoke(app, ["models", "import", str(ckpt), "--as", name, "--json"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert spec["available"] and spec["source"] == "cache" and spec["dim"] == 32
    assert spec["location"].startswith(str(offline_cache))

    listed = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert name in [s["name"] for s in listed]
    assert [s.name for s in list_encoders("clip:Tiny*")] == [name]

    ckpt.unlink()  # the cache copy must be what is used now
    enc = create_encoder(name)
    assert enc.weights_source == "cache" and enc.modalities == ("image", "text")
    img = enc.encode_images(posters)
    txt = enc.encode_texts(["a poster of a horror movie", "a poster of a comedy"])
    assert img.shape == (4, 32) and txt.shape == (2, 32)
    for v in (img, txt):
        assert v.dtype == np.float32 and v.flags.c_contiguous
        assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = img @ txt.T
    assert np.all(np.isfinite(cos)) and np.all(np.abs(cos) <= 1.0 + 1e-5)
    assert enc.space == name and enc.describe()["space"] == name


def test_explicit_checkpoint_path_both_backends(tmp_path, posters):
    name, _ = make_tiny_clip_checkpoint(tmp_path)
    a = create_encoder(name, backend="onnx")
    b = create_encoder(name, backend="torch")
    assert a.weights_source == "local file"
    va, vb = a.encode_images(posters), b.encode_images(posters)
    assert np.min(np.sum(va * vb, axis=1)) > 0.9999
    assert np.allclose(a.encode_texts(["x y z"]), b.encode_texts(["x y z"]), atol=1e-5)
    assert a.describe()["architecture"]["config_source"].endswith("open_clip_config.json")


def test_custom_arch_with_config_option(tmp_path):
    _, ckpt = make_tiny_clip_checkpoint(tmp_path / "dl")
    (tmp_path / "dl" / "open_clip_config.json").unlink()  # config travels separately
    cfg = tmp_path / "my_arch.json"
    cfg.write_text(json.dumps(TINY_CONFIG["model_cfg"]))  # bare open_clip model config
    name = "clip:MyArch@v1"

    result = runner.invoke(app, ["models", "import", str(ckpt), "--as", name])
    assert result.exit_code == 1
    assert "'MyArch' is not an open_clip built-in config" in result.output

    result = runner.invoke(app, ["models", "import", str(ckpt), "--as", name, "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert create_encoder(name, backend="torch").dim == 32


def test_import_refuses_bad_files(tmp_path):
    junk = tmp_path / "open_clip_pytorch_model.bin"
    junk.write_text("<html>rate limited</html>")
    result = runner.invoke(app, ["models", "import", str(junk), "--as", "clip:ViT-B-32@x"])
    assert result.exit_code == 1 and "error:" in result.output
    assert "does not fit CLIP architecture 'ViT-B-32'" in result.output

    _, ckpt = make_tiny_clip_checkpoint(tmp_path / "tiny")
    # right format, wrong architecture: refused, nothing imported
    result = runner.invoke(app, ["models", "import", str(ckpt), "--as", "clip:ViT-B-32@wrong"])
    assert result.exit_code == 1
    assert "describes a different architecture than open_clip's 'ViT-B-32'" in result.output
    assert not list_encoders("clip:ViT-B-32@wrong")

    result = runner.invoke(app, ["models", "import", str(ckpt), "--as", "cnn:efficientnet-lite0"])
    assert result.exit_code == 1 and "does not hold efficientnet-lite0 weights" in result.output


def test_import_timm_weights_then_resolve(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1)
    f = tmp_path / "model.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(f))
    result = runner.invoke(app, ["models", "import", str(f), "--as", "timm:test_resnet.r160_in1k"])
    assert result.exit_code == 0, result.output
    enc = create_encoder("timm:test_resnet.r160_in1k", backend="torch")
    assert enc.weights_source == "cache"


def test_models_table_and_missing_path():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "cnn:efficientnet-lite0" in result.stdout and "packaged" in result.stdout
    result = runner.invoke(
        app, ["models", "import", "/no/such/file.bin", "--as", "clip:ViT-B-32@x"]
    )
    assert result.exit_code != 0


def test_names_with_paths_cannot_be_import_targets(tmp_path):
    _, ckpt = make_tiny_clip_checkpoint(tmp_path)
    from embedgenre.encoders.registry import import_weights

    with pytest.raises(EmbedgenreError, match=r"contains a path"):
        import_weights(ckpt, f"clip:{TINY_ARCH}@{ckpt}")
