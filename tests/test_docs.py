"""The documentation: the site builds with --strict (every page in the nav, every link and
docstring reference resolves), and README's code fences all close."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def test_readme_code_fences_all_close():
    fences = [line for line in (ROOT / "README.md").read_text().splitlines() if FENCE.match(line)]
    assert len(fences) % 2 == 0, f"README.md has {len(fences)} code fences: one never closes"


def test_the_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocstrings")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").exists()
    page = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    # the API reference is generated from the docstrings, not written by hand
    assert "Fit a head on the index" in page
    assert "EmbedgenreError" in page
