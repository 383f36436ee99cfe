"""README's Python tour runs as written, from a checkout laid out as a user has it: the
repository as the working directory, with the shared data folder beside it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMBEDGENRE_SHARED_DATA", ROOT.parent / "shared" / "data"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def readme_python() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_has_a_python_tour():
    blocks = readme_python()
    assert len(blocks) >= 2
    assert "import embedgenre" in blocks[0]
    # the main job fits in five lines besides the import
    assert len([line for line in blocks[0].splitlines()[1:] if line.strip()]) <= 5


def test_readme_python_blocks_run_as_written(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED, target_is_directory=True)
    script = "\n".join(readme_python())
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    # the first block prints the predicted genres of the poster as a list of names
    assert out and out[0].startswith("[") and out[0].endswith("]"), r.stdout
    assert "threshold" in r.stdout
    assert (checkout / "indexes" / "fixture" / "manifest.json").exists()
    assert "indexes/missing" in r.stdout  # the error names what is missing
