"""How the test suite itself behaves: it keeps out of the user's model cache, and tests share
stand-ins through helper modules, never by importing another test module."""

from __future__ import annotations

import re
from pathlib import Path

from embedgenre.encoders.weights import cache_dir

TESTS = Path(__file__).resolve().parent


def test_the_model_cache_is_a_temporary_folder():
    assert cache_dir() != Path.home() / ".cache" / "embedgenre"
    assert "embedgenre-test-cache" in str(cache_dir()) or cache_dir().exists()


def test_no_test_module_imports_another():
    pattern = re.compile(r"^\s*(from|import)\s+test_\w+", re.M)
    offenders = [p.name for p in TESTS.glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
