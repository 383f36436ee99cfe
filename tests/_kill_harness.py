"""Kill an index run at every commit step and check that a plain re-run repairs it.

Run as ``python tests/_kill_harness.py WORKDIR``; prints one JSON document. A parent process
imports everything once, then for each step N forks a child that runs ``build_index`` and is
SIGKILLed at its N-th rename, replace or fsync (before the call); a second child opens the
index as the kill left it, re-runs the same build and compares the result with an
uninterrupted run. The parent itself never runs the index code, so every child starts clean.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _catalogs import make_catalog  # noqa: E402
from _fakes import Factory  # noqa: E402

from embedgenre.catalog import read_catalog  # noqa: E402
from embedgenre.errors import IndexStoreError  # noqa: E402
from embedgenre.indexing import build_index  # noqa: E402
from embedgenre.store import GenreIndex  # noqa: E402

STEP_CALLS = ("replace", "rename", "fsync")


def make_small_catalog(root: Path) -> Path:
    (root / "posters").mkdir(parents=True)
    rows = []
    for i in range(8):
        iid = f"tt80{i:05d}"
        Image.new("RGB", (20, 30), (30 * i, 90, 200 - 20 * i)).save(root / "posters" / f"{iid}.jpg")
        plot = f"A story number {i} about a town." if i % 4 else ""
        rows.append(
            {
                "imdb_id": iid,
                "title": f"Movie {i}",
                "genres": "Drama",
                "plot": plot,
                "poster": f"posters/{iid}.jpg",
            }
        )
    (root / "posters" / "tt8000003.jpg").write_bytes(b"\xff\xd8\xff broken")  # skipped
    make_catalog(root, rows)
    return root


def run_build(catalog: Path, out: Path) -> None:
    build_index(
        read_catalog(catalog),
        out,
        image_encoders=["fake:a"],
        text_encoders=["fake:t"],
        encoder_factory=Factory(),
        chunk_size=2,
        batch_size=2,
    )


def snapshot(out: Path) -> dict:
    idx = GenreIndex.open(out)
    return {
        "ids": idx.ids,
        "skipped": sorted(r["id"] for r in idx.skipped),
        "complete": idx.manifest.complete,
        "sets": {
            s.key: [
                list(map(str, s.ids)),
                np.asarray(s.vectors).tolist(),
                [idx.thumbnail(str(i)) is not None for i in s.ids],
            ]
            for s in idx.sets
        },
    }


def in_child(fn) -> int:
    """Run ``fn`` in a forked child; return its wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            code = 0
        except BaseException as e:  # reported through the exit code and stderr
            print(f"child failed: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def counting(kill_at: int, counter: list[int]) -> None:
    """Wrap os.replace/rename/fsync: count each call, SIGKILL this process at call ``kill_at``."""
    for name in STEP_CALLS:
        real = getattr(os, name)

        def step(*args, _real=real, **kw):
            counter[0] += 1
            if counter[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kw)

        setattr(os, name, step)


def main(work: Path) -> dict:
    catalog = make_small_catalog(work / "cat")
    ref_out, count_file = work / "ref", work / "steps.json"

    def reference():
        counter = [0]
        counting(0, counter)
        run_build(catalog, ref_out)
        count_file.write_text(json.dumps(counter[0]))
        (work / "ref.json").write_text(json.dumps(snapshot(ref_out)))

    if in_child(reference) != 0:
        return {"error": "the uninterrupted run failed"}
    steps = json.loads(count_file.read_text())
    failures, resumed, before_first_commit = [], 0, 0
    for n in range(1, steps + 1):
        out = work / f"run-{n}"

        def killed(n=n, out=out):
            counting(n, [0])
            run_build(catalog, out)

        status = in_child(killed)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            failures.append(f"step {n}: the run was not killed (status {status})")
            continue
        verdict = work / f"verdict-{n}.json"

        def check(out=out, verdict=verdict):
            opened = "yes"
            try:
                GenreIndex.open(out)
            except IndexStoreError as e:
                if "run the same command again" not in str(e):
                    raise
                opened = "not yet: first commit not reached"
            run_build(catalog, out)
            now = json.loads(json.dumps(snapshot(out)))
            same = now == json.loads((work / "ref.json").read_text())
            leftovers = sorted(p.name for p in out.rglob("*.tmp")) + (
                [".partial"] if (out / ".partial").exists() else []
            )
            verdict.write_text(json.dumps({"opened": opened, "same": same, "left": leftovers}))

        if in_child(check) != 0 or not verdict.exists():
            failures.append(f"step {n}: the re-run failed")
            continue
        v = json.loads(verdict.read_text())
        before_first_commit += v["opened"] != "yes"
        if not v["same"]:
            failures.append(f"step {n}: the re-run differs from an uninterrupted run")
        elif v["left"]:
            failures.append(f"step {n}: the re-run left {v['left']}")
        else:
            resumed += 1
        shutil.rmtree(out, ignore_errors=True)
    return {
        "steps": steps,
        "resumed": resumed,
        "before_first_commit": before_first_commit,
        "failures": failures,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
