"""The package list in pyproject.toml names every folder of the library (an unlisted folder of
files is a warning at install and is left out of a wheel)."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_library_folder_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {
        ".".join(p.relative_to(ROOT).parts)
        for p in [ROOT / "embedgenre", *(ROOT / "embedgenre").rglob("*")]
        if p.is_dir() and p.name != "__pycache__" and any(f.is_file() for f in p.iterdir())
    }
    assert folders - listed == set()
    # the page assets travel as data of their package
    assert config["package-data"]["embedgenre.serve.static"] == ["*"]
