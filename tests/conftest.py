"""Shared test fixtures: where the shared poster data lives, small synthetic data."""

from __future__ import annotations

import csv
import os
import shutil
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


@pytest.fixture(scope="session", autouse=True)
def _forget_tiny_clip_exports():
    """Tiny CLIP checkpoints live in per-test temporary folders, and their ONNX exports are
    keyed by that path, so no later run can reuse them: remove the ones this run left in the
    user's cache (tests that set their own $EMBEDGENRE_CACHE clean up with their tmp_path)."""
    import shutil

    from _tiny_clip import TINY_ARCH

    from embedgenre.encoders.weights import cache_dir

    yield
    for d in (cache_dir() / "onnx").glob(f"clip_{TINY_ARCH}_*"):
        shutil.rmtree(d, ignore_errors=True)
