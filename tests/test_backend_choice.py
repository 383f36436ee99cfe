"""The backend measured per CPU and cached, --backend/--precision, and the fp32 fidelity guard.

Tiny random CLIP models (tests/_tiny_clip.py) stand in for real ones: only the mechanics are
checked here (which backend ran, what was cached and recorded, what was refused), never speed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny_clip import TINY_ARCH, imported_tiny_clip
from typer.testing import CliRunner

from embedgenre.cli.app import app
from embedgenre.encoders import calibration, cpu, create_encoder, devices
from embedgenre.encoders.weights import imported_weights
from embedgenre.errors import EmbedgenreError

runner = CliRunner()
AVX2_ONLY = cpu.CpuInfo("Test AVX2 CPU", frozenset({"avx", "avx2", "fma"}), 2)
WITH_UNITS = cpu.CpuInfo("Test AMX CPU", frozenset({"avx2", "avx512f", "amx_bf16", "amx_int8"}), 2)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("backend-cache")


@pytest.fixture(autouse=True)
def own_cache(module_cache, monkeypatch):
    monkeypatch.setenv("EMBEDGENRE_CACHE", str(module_cache / "cache"))
    monkeypatch.setenv("EMBEDGENRE_OFFLINE", "1")
    return module_cache / "cache"


@pytest.fixture
def tiny(module_cache):
    """A tiny CLIP checkpoint shared by this module's tests (exported once into its cache)."""
    name = f"clip:{TINY_ARCH}@backend"
    if imported_weights(name) is None:
        imported_tiny_clip(module_cache / "download", tag="backend")
    return name


def pretend_cpu(monkeypatch, info: cpu.CpuInfo) -> None:
    monkeypatch.setattr(cpu, "cpu_info", lambda: info)
    monkeypatch.setattr(calibration, "cpu_info", lambda: info)


def index_tiny(cat, out, tiny, *options: str):
    """``embedgenre index`` of ``cat`` into ``out`` with the tiny CLIP for both towers."""
    return runner.invoke(
        app,
        ["index", str(cat), "--out", str(out), "--image-encoder", tiny, "--text-encoder", tiny,
         *options],
    )  # fmt: skip


def test_precision_needs_matrix_units():
    with pytest.raises(EmbedgenreError, match=r"bf16 matrix units.*Test AVX2 CPU.*fp32"):
        cpu.check_precision("bf16", cpu=AVX2_ONLY)
    with pytest.raises(EmbedgenreError, match=r"int8 matrix units \(amx_int8 or avx512_vnni"):
        cpu.check_precision("int8", cpu=AVX2_ONLY)
    assert cpu.check_precision("bf16", cpu=WITH_UNITS) == "bf16"
    assert cpu.check_precision("INT8", cpu=WITH_UNITS) == "int8"
    assert cpu.check_precision(None) == "fp32"
    with pytest.raises(EmbedgenreError, match=r"unknown precision 'fp16'.*fp32, bf16, int8"):
        cpu.check_precision("fp16")
    with pytest.raises(EmbedgenreError, match=r"CPU option.*use the cpu device") as e:
        cpu.check_precision("int8", device="cuda", cpu=WITH_UNITS)
    assert e.value.param == "precision"
    # a GPU runs the model in bfloat16 instead of float16, whatever the CPU
    assert cpu.check_precision("bf16", device="cuda", cpu=AVX2_ONLY) == "bf16"
    assert cpu.precision_units("int8", WITH_UNITS) == ["amx_int8"]
    assert AVX2_ONLY.key() != WITH_UNITS.key()


def test_this_cpu_offers_reduced_precision_only_with_units(tiny):
    here = cpu.cpu_info()
    for precision in ("bf16", "int8"):
        if cpu.precision_units(precision):
            if precision == "bf16":
                assert create_encoder(tiny, precision="bf16").precision == "bf16"
        else:
            with pytest.raises(EmbedgenreError, match=f"{precision} matrix units.*{here.model}"):
                create_encoder(tiny, precision=precision)


def test_backend_is_measured_once_per_cpu_and_cached(tiny, monkeypatch):
    first_seen = cpu.CpuInfo("Test AVX2 CPU", frozenset({"avx2", "fma", "f16c"}), 2)
    pretend_cpu(monkeypatch, first_seen)  # a CPU no other test of this module pretends to be
    enc = create_encoder(tiny)
    choice = enc.backend_choice
    assert choice["by"] == "measured now"
    assert set(choice["items_per_s"]) == {"onnx", "torch"}  # a ViT: no channels-last candidate
    rates = choice["items_per_s"]
    assert enc.backend == choice["chosen"] == max(rates, key=rates.get)
    assert choice["cpu"]["model"] == "Test AVX2 CPU"

    def no_measuring(*a, **k):
        raise AssertionError("measured again although a measurement is cached")

    monkeypatch.setattr(calibration, "measure", no_measuring)
    again = create_encoder(tiny)
    assert again.backend_choice["by"] == "cached measurement"
    assert again.backend == enc.backend
    assert create_encoder(tiny, purpose="query").backend == "onnx"  # queries: loads fastest

    pretend_cpu(monkeypatch, WITH_UNITS)  # another CPU kind: its own measurement
    with pytest.raises(AssertionError, match="measured again"):
        create_encoder(tiny)
    with pytest.raises(EmbedgenreError, match=r"unknown purpose 'serve'.*bulk, query"):
        create_encoder(tiny, purpose="serve")


def test_backend_override_is_recorded_in_the_manifest(tmp_path, small_catalog, tiny):
    cat, _ = small_catalog
    out = tmp_path / "idx"
    result = index_tiny(cat, out, tiny, "--backend", "torch", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    poster = next(s for s in manifest["sets"] if s["modality"] == "poster")
    assert poster["encoder"]["backend"] == "torch"
    assert poster["encoder"]["backend_choice"]["by"] == "asked"
    assert poster["encoder"]["precision"] == "fp32"
    from embedgenre.store import GenreIndex

    index = GenreIndex.open(out)
    emb = index.get_set("poster", tiny)
    paths = [cat / "posters" / f"{i}.jpg" for i in emb.ids[:4]]
    onnx = create_encoder(tiny, backend="onnx").encode_images(paths)
    assert np.allclose(emb.vectors[:4], onnx, atol=1e-5)

    bad = runner.invoke(app, ["index", str(cat), "--out", str(out), "--backend", "tensorrt"])
    assert bad.exit_code != 0 and "tensorrt" in bad.output


def test_cli_refuses_precision_without_units(tmp_path, small_catalog, tiny, monkeypatch):
    pretend_cpu(monkeypatch, AVX2_ONLY)
    cat, _ = small_catalog
    result = index_tiny(cat, tmp_path / "idx", tiny, "--precision", "int8")
    assert result.exit_code == 1
    assert "int8 matrix units" in result.output and "Test AVX2 CPU" in result.output


def test_fidelity_guard_passes_bf16_and_refuses_what_drifts(tiny, monkeypatch):
    pretend_cpu(monkeypatch, WITH_UNITS)
    enc = create_encoder(tiny, precision="bf16")
    assert enc.backend == "torch" and enc.precision == "bf16"
    assert enc.backend_choice["min_cosine_to_fp32"] >= devices.MIN_COSINE
    assert enc.backend_choice["units"] == ["amx_bf16"]
    assert enc.describe()["precision"] == "bf16"
    # How far int8 drifts depends on the CPU's int8 kernels (VNNI or not); a guard no rounded
    # model can meet must refuse it, naming the cosine it measured.
    monkeypatch.setattr(devices, "MIN_COSINE", 1.0 + 1e-9)
    with pytest.raises(EmbedgenreError, match=r"int8.*cosine to fp32 as low as 0\.\d{5}"):
        create_encoder(tiny, precision="int8")
    with pytest.raises(EmbedgenreError, match=r"runs on backend 'torch', not 'onnx'"):
        create_encoder(tiny, precision="bf16", backend="onnx")


def test_index_checks_a_reduced_precision_on_the_catalogs_own_posters(
    tmp_path, small_catalog, tiny, monkeypatch
):
    """Probe images passed; the catalog's posters are checked too, before any is encoded."""
    import embedgenre.encoders as encoders

    pretend_cpu(monkeypatch, WITH_UNITS)
    cat, _ = small_catalog
    real = encoders.create_encoder

    def fp32_reference_that_drifts(name, **kw):  # what bf16 looks like next to it on posters
        enc = real(name, **kw)
        if kw.get("precision", "fp32") == "fp32":
            clean, rng = enc.encode_pixels, np.random.default_rng(0)
            enc.encode_pixels = lambda x, **k: (
                clean(x, **k) + rng.normal(0, 0.3, (len(x), enc.dim)).astype(np.float32)
            )
        return enc

    monkeypatch.setattr(encoders, "create_encoder", fp32_reference_that_drifts)
    out = tmp_path / "idx"
    result = index_tiny(cat, out, tiny, "--precision", "bf16")
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert "precision 'bf16'" in flat and "(on 20 of the catalog's posters)" in flat
    assert "--precision: " in flat and "use precision fp32" in flat
    manifest = json.loads((out / "manifest.json").read_text())  # the items, committed first
    assert manifest["sets"] == [] and not manifest["complete"]


def test_check_fidelity_against_a_slow_reference():
    x = devices.probe_pixels(6, 16, 12, seed=3)
    assert x.shape == (6, 3, 16, 12) and x.dtype == np.float32
    assert np.array_equal(x, devices.probe_pixels(6, 16, 12, seed=3))
    assert 0.3 < float(x.std()) < 3.0  # about unit scale, like normalised photos
    w = np.random.default_rng(0).normal(size=(3 * 16 * 12, 8)).astype(np.float32)

    def ref(pixels):
        return pixels.reshape(len(pixels), -1) @ w

    def close(pixels):
        return ref(pixels) * 1.5 + 1e-4  # scale does not change a direction

    def drifted(pixels):
        out = ref(pixels)
        out[:, 0] += 0.2 * np.abs(out).max()
        return out

    assert devices.check_fidelity(ref, close, x, "test") > 0.9999
    with pytest.raises(EmbedgenreError, match=r"test changes the embeddings too much"):
        devices.check_fidelity(ref, drifted, x, "test")


def test_an_int8_set_is_queried_with_its_int8_model_from_the_bundle(
    tmp_path, small_catalog, tiny, monkeypatch
):
    from embedgenre.encoders import load_set_encoder
    from embedgenre.store import GenreIndex

    pretend_cpu(monkeypatch, WITH_UNITS)
    monkeypatch.setattr(devices, "MIN_COSINE", 0.9)  # a tiny random model: the mechanics only
    cat, _ = small_catalog
    out = tmp_path / "idx"
    result = index_tiny(cat, out, tiny, "--precision", "int8")
    assert result.exit_code == 0, result.output
    emb = GenreIndex.open(out).get_set("poster", tiny)
    assert emb.describe["precision"] == "int8"

    query = load_set_encoder(emb)
    assert query.precision == "int8" and query.backend == "onnx"
    assert "bundle" in query.backend_choice  # the cached export alone: no torch, no open_clip
    vec = query.encode_images([cat / "posters" / f"{emb.ids[0]}.jpg"])[0]
    # dynamic int8 quantization scales activations per batch, so one poster alone
    # lands near, not exactly on, the vector it got in the indexing batch
    assert float(vec @ np.asarray(emb.vectors[0])) > 0.99

    pretend_cpu(monkeypatch, AVX2_ONLY)  # the same index on a CPU without int8 units
    assert load_set_encoder(emb).precision == "fp32"
