"""The Ray Data engine on a local Ray cluster started here (2 CPUs, shared by this module).

It must build the same index as the local engine, send nothing to workers when nothing changed,
survive an encoder actor killed mid-run, and resume after its driver is killed.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _catalogs import make_catalog
from _kill import kill_after_chunks
from PIL import Image
from typer.testing import CliRunner

from embedgenre.catalog import read_catalog
from embedgenre.cli.app import app
from embedgenre.distributed import RayEngine, make_engine, ray_engine
from embedgenre.distributed.ray_engine import plan_resources
from embedgenre.errors import EmbedgenreError
from embedgenre.indexing import build_index
from embedgenre.store import GenreIndex

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

ray = pytest.importorskip("ray", reason="the Ray engine needs ray[data] (the dev extra has it)")

POSTERS = "cnn:efficientnet-lite0"
PLOTS = "hybrid:all-MiniLM-L6-v2"
KEY = "poster__cnn-efficientnet-lite0"


@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU Ray cluster; yields its address so other processes can join it."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fault hooks below
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def poster_catalog(fixture_dir: Path, root: Path, n: int) -> Path:
    """``n`` fixture posters without plots (a poster-only index) and one corrupt poster."""
    with open(fixture_dir / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    (root / "posters").mkdir(parents=True)
    for r in rows:
        shutil.copy(fixture_dir / r["poster"], root / r["poster"])
        r["plot"] = ""
    (root / rows[3]["poster"]).write_bytes(b"\xff\xd8\xff not a jpeg")
    return make_catalog(root, rows)


def assert_same_set(a: GenreIndex, b: GenreIndex, key: str) -> None:
    """Set ``key`` of ``b`` holds the same rows as ``a``'s for the same ids (``a`` may hold
    more items): same hashes and thumbnails, vectors with cosine > 0.9999."""
    sa, sb = (next(s for s in idx.sets if s.key == key) for idx in (a, b))
    where = {str(i): n for n, i in enumerate(sa.ids)}
    rows = [where[str(i)] for i in sb.ids]
    assert [a.ids[r] for r in sa.rows[rows]] == [b.ids[r] for r in sb.rows]
    hashes = [np.load(s.directory / "hashes.npy") for s in (sa, sb)]
    assert list(hashes[0][rows]) == list(hashes[1])
    cosine = np.sum(np.asarray(sa.vectors)[rows] * np.asarray(sb.vectors), axis=1)
    assert cosine.min() > 0.9999
    if sa.thumbs is not None:
        assert [sa.thumbnail(r) for r in rows] == [sb.thumbnail(i) for i in range(len(sb.ids))]


def test_ray_engine_builds_the_local_engines_index_and_reruns_send_nothing(
    cluster, fixture_dir, fixture_index_dir, tmp_path
):
    engine = RayEngine(workers=1)
    out = tmp_path / "ray-index"
    cat = read_catalog(fixture_dir)
    summary = build_index(cat, out, [POSTERS], [PLOTS], engine=engine)
    assert {s.key: s.encoded for s in summary.sets} == {
        KEY: 110,
        "plot__hybrid-all-MiniLM-L6-v2": 110,
    }
    assert engine.rows_sent == 220 and [r["resources"]["workers"] for r in engine.runs] == [1, 1]
    local, remote = GenreIndex.open(fixture_index_dir), GenreIndex.open(out)
    assert local.ids == remote.ids
    assert local.manifest.items_digest == remote.manifest.items_digest
    assert local.skipped == remote.skipped
    for modality in ("poster", "plot"):
        assert list(local.get_set(modality).ids) == list(remote.get_set(modality).ids)
    for key in (KEY, "plot__hybrid-all-MiniLM-L6-v2"):
        assert_same_set(local, remote, key)

    generation = remote.generation
    again = build_index(read_catalog(fixture_dir), out, engine=engine)
    assert engine.rows_sent == 220 and len(engine.runs) == 2  # no pipeline ran
    assert [s.encoded for s in again.sets] == [0, 0]
    assert GenreIndex.open(out).generation == generation


def _die_once(marker: str, at_batch: int, batch: int) -> None:
    """Fault hook: the first actor to reach ``at_batch`` exits at once (once per marker)."""
    if batch == at_batch and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)


def test_a_killed_worker_is_restarted_and_the_index_completes(
    cluster, fixture_dir, fixture_index_dir, tmp_path
):
    root = poster_catalog(fixture_dir, tmp_path / "cat", 24)
    marker = tmp_path / "killed"
    engine = RayEngine(workers=2, fault_hook=functools.partial(_die_once, str(marker), 2))
    out = tmp_path / "ray-index"
    summary = build_index(read_catalog(root), out, [POSTERS], batch_size=4, engine=engine)
    assert marker.exists(), "the fault hook never killed an actor"
    (s,) = summary.sets
    assert (s.count, s.encoded, s.skipped) == (23, 23, 1)
    remote = GenreIndex.open(out)
    assert_same_set(GenreIndex.open(fixture_index_dir), remote, KEY)
    assert [r["id"] for r in remote.skipped] == [remote.ids[3]]
    assert remote.skipped[0]["reason"] and remote.skipped[0]["hash"]
    assert remote.manifest.complete


DRIVER = """
import sys, time
import ray
from embedgenre.catalog import read_catalog
from embedgenre.distributed import RayEngine
from embedgenre.indexing import build_index

def slow(batch):  # two blocks run, then the run stalls until killed
    time.sleep(0.3 if batch <= 8 else 60)

ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
build_index(read_catalog(sys.argv[2]), sys.argv[3], ["{posters}"], batch_size=2, chunk_size=2,
            engine=RayEngine(workers=1, fault_hook=slow))
"""


def test_a_killed_driver_resumes_from_its_chunks(cluster, fixture_dir, fixture_index_dir, tmp_path):
    root = poster_catalog(fixture_dir, tmp_path / "cat", 24)
    out = tmp_path / "ray-index"
    script = textwrap.dedent(DRIVER).format(posters=POSTERS)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, cluster, str(root), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    partial = out / ".partial" / KEY
    kept = kill_after_chunks(proc, partial, chunks=2, timeout=120)
    assert 2 <= kept < 12, kept

    engine = RayEngine(workers=1)
    summary = build_index(read_catalog(root), out, [POSTERS], batch_size=4, engine=engine)
    (s,) = summary.sets
    assert s.resumed >= 2 * kept - 1  # a chunk holds 2 posters, the corrupt one is in none
    assert s.resumed + s.encoded == 23 and engine.rows_sent == 23 - s.resumed + 1
    assert_same_set(GenreIndex.open(fixture_index_dir), GenreIndex.open(out), KEY)
    assert not partial.exists()


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, fixture_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(EmbedgenreError, match=r"pip install 'embedgenre\[distributed\]'"):
        ray_engine._import_ray()
    result = CliRunner().invoke(
        app, ["index", str(fixture_dir), "--out", str(tmp_path / "x"), "--engine", "ray"]
    )
    assert result.exit_code == 1
    assert "embedgenre[distributed]" in result.output
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_engine_options_are_checked_before_anything_runs():
    with pytest.raises(EmbedgenreError, match="apply to the ray engine only"):
        make_engine("local", workers=2)
    with pytest.raises(EmbedgenreError, match="unknown engine 'spark'"):
        make_engine("spark")
    with pytest.raises(EmbedgenreError, match="expected auto, ray://HOST:PORT"):
        RayEngine(address="cluster")
    with pytest.raises(EmbedgenreError, match="need 4 GPUs but the Ray cluster has 1"):
        plan_resources(8, 1, workers=4, gpus_per_worker=1.0)


def test_resources_leave_room_for_decode_tasks():
    for cpus, workers in ((2, 1), (2, 2), (16, 4), (1, 1)):
        r = plan_resources(cpus, 0, workers, 0.0)
        assert r.workers == workers
        assert r.workers * r.cpus_per_worker + 2 * r.decode_cpus <= cpus + 1e-9
        assert r.threads_per_worker == max(1, cpus // workers)
    gpu = plan_resources(16, 2, None, 0.5)  # fractional GPUs: 4 actors share 2 GPUs
    assert (gpu.workers, gpu.gpus_per_worker, gpu.cpus_per_worker) == (4, 0.5, 1.0)
    assert plan_resources(8, 0, None, 0.0).workers == 4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_actors_that_decode_on_their_device_build_the_same_index(cluster, fixture_dir, tmp_path):
    """Read tasks only read bytes (Pillow only for what a device decoder does not take); each
    actor batch-decodes, resizes and thumbnails as tensors (the GPU actors' path, on CPU here):
    the same rows and skipped posters as the Pillow path, vectors at cosine >= 0.999."""
    cat = poster_catalog(fixture_dir, tmp_path / "cat", 24)
    progressive = cat / "posters" / "progressive.jpg"  # decoded by Pillow in the read task
    with open(cat / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    Image.open(fixture_dir / rows[5]["poster"]).save(progressive, progressive=True, quality=90)
    rows[5]["poster"] = str(progressive.relative_to(cat))
    make_catalog(cat, rows)
    out, skipped = {}, {}
    for kind in ("pil", "tensor"):
        engine = RayEngine(workers=1, input_pipeline=kind)
        summary = build_index(read_catalog(cat), tmp_path / kind, [POSTERS], [], engine=engine)
        skipped[kind] = [(s.id, s.reason) for s in summary.skipped]
        out[kind] = GenreIndex.open(tmp_path / kind).get_set("poster")
    assert skipped["pil"] == skipped["tensor"]
    assert [i for i, _ in skipped["tensor"]] == [rows[3]["imdb_id"]]
    a, b = out["pil"], out["tensor"]
    assert list(a.ids) == list(b.ids) and len(b.ids) == 23
    cosine = np.sum(np.asarray(a.vectors) * np.asarray(b.vectors), axis=1)
    assert cosine.min() >= 0.999
    assert all(b.thumbnail(i)[:2] == b"\xff\xd8" for i in range(len(b.ids)))
