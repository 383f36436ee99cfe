"""Shared test fixtures: where the shared poster data lives, small synthetic data."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from _catalogs import FIELDS, make_catalog

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMBEDGENRE_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURE_DIR = SHARED_DATA / "fixture"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The 110-movie catalog in ../shared/data/fixture (read-only; never copy it)."""
    if not (FIXTURE_DIR / "movies.csv").exists():
        pytest.fail(f"shared fixture not found at {FIXTURE_DIR}; set EMBEDGENRE_SHARED_DATA")
    return FIXTURE_DIR


@pytest.fixture()
def small_catalog(tmp_path, fixture_dir) -> tuple[Path, list[dict]]:
    """20 fixture movies, posters copied into a temporary catalog we are free to change."""
    with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
        src = list(csv.DictReader(f))[:20]
    root = tmp_path / "cat"
    (root / "posters").mkdir(parents=True)
    rows = []
    for r in src:
        shutil.copy(fixture_dir / r["poster"], root / r["poster"])
        rows.append({k: r[k] for k in FIELDS})
    make_catalog(root, rows)
    return root, rows


@pytest.fixture(scope="session")
def fixture_index_dir(fixture_dir, tmp_path_factory) -> Path:
    """The fixture catalog indexed once per test session with the packaged offline encoders
    (EfficientNet-Lite0 posters, MiniLM + LSA hybrid plots). Read-only: copy it before changing it."""
    from embedgenre.catalog import read_catalog
    from embedgenre.indexing import build_index

    out = tmp_path_factory.mktemp("fixture-index") / "index"
    build_index(
        read_catalog(fixture_dir),
        out,
        image_encoders=["cnn:efficientnet-lite0"],
        text_encoders=["hybrid:all-MiniLM-L6-v2"],
    )
    return out


def pytest_configure(config):
    """The model cache (ONNX exports, backend measurements, imported weights) lives in a
    temporary folder for the whole run, so tests never write into the user's cache and every
    run starts from what a new machine has. $EMBEDGENRE_TEST_CACHE keeps one between runs."""
    keep = os.environ.get("EMBEDGENRE_TEST_CACHE")
    folder = keep or tempfile.mkdtemp(prefix="embedgenre-test-cache-")
    config._embedgenre_cache = (folder, os.environ.get("EMBEDGENRE_CACHE"), not keep)
    os.environ["EMBEDGENRE_CACHE"] = folder


def pytest_unconfigure(config):
    folder, before, remove = getattr(config, "_embedgenre_cache", (None, None, False))
    if folder is None:
        return
    if before is None:
        os.environ.pop("EMBEDGENRE_CACHE", None)
    else:
        os.environ["EMBEDGENRE_CACHE"] = before
    if remove:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def service(index_dir):
    """The HTTP service over the module's ``index_dir``, started once per module."""
    from embedgenre.serve import ServeConfig
    from embedgenre.serve.service import Service

    svc = Service(ServeConfig(index_dir=index_dir))
    svc.start()
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service):
    """FastAPI's TestClient on ``service``, at a Host the server trusts."""
    from fastapi.testclient import TestClient

    from embedgenre.serve import create_app

    with TestClient(create_app(service.config, service), base_url="http://localhost") as c:
        yield c
