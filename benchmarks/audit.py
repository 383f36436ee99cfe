"""Does the label audit find labels we broke on purpose? Precision at k on the shared posters.

On the development index (built as benchmarks/quality.py says), two corruptions of the labels,
each on 5% of the labelled movies, audited separately with `embedgenre audit` (the library call
:func:`embedgenre.audit.audit`, k = the number of movies changed):

- wrong sets: a movie's genres replaced by a random set of the same size that shares none of them
  (drawn uniformly from the other genres, or by genre frequency: the harder, likelier mistakes);
- dropped genre: one genre removed from a movie that has two or more.

Precision at k = the share of the audit's top k that are movies we changed; a random ranking
scores the share changed (0.05). The labels are IMDb's and noisy of their own (about 14% of movies
disagree between two copies), so some of the audit's "misses" are real label problems.

    python benchmarks/audit.py [--index indexes/posters-dev] [--spec knn:both:late]
        [--rate 0.05] [--seed 0]

Target: precision at k >= 0.5 for wrong sets.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_INDEX = ROOT / "indexes" / "posters-dev"


def wrong_sets(Y: np.ndarray, rows: np.ndarray, rng, by_frequency: bool) -> np.ndarray:
    """A copy of Y whose ``rows`` have their genres replaced by as many others."""
    out = Y.copy()
    freq = Y.sum(axis=0).astype(float)
    for i in rows:
        others = np.flatnonzero(~Y[i] & (freq > 0))
        w = freq[others] / freq[others].sum() if by_frequency else None
        pick = rng.choice(others, size=int(Y[i].sum()), replace=False, p=w)
        out[i] = False
        out[i, pick] = True
    return out


def dropped_genre(Y: np.ndarray, rows: np.ndarray, rng) -> tuple[np.ndarray, dict[int, int]]:
    """A copy of Y with one genre removed from each of ``rows`` (each has two or more)."""
    out, dropped = Y.copy(), {}
    for i in rows:
        j = int(rng.choice(np.flatnonzero(Y[i])))
        out[i, j] = False
        dropped[int(i)] = j
    return out, dropped


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=DEFAULT_INDEX)
    ap.add_argument(
        "--spec",
        action="append",
        help="METHOD:MODALITY[:FUSION] of a head to audit with (repeatable; trained and saved "
        "as bench-METHOD-MODALITY if the index lacks it). Default: knn:both:late",
    )
    ap.add_argument("--rate", type=float, default=0.05, help="share of labelled movies changed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "audit.md")
    args = ap.parse_args(argv)
    if not (args.index / "manifest.json").exists():
        print(
            f"no index at {args.index}; build it first:\n  embedgenre index ../shared/data/posters "
            "--out indexes/posters-dev",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    from embedgenre.audit import audit
    from embedgenre.heads import train_head
    from embedgenre.heads.saved import list_heads
    from embedgenre.predictors import HeadSpec
    from embedgenre.store import GenreIndex

    index = GenreIndex.open(args.index)
    specs = []
    for text in args.spec or ["knn:both:late"]:
        method, modality, *fusion = text.split(":")
        specs.append(HeadSpec(method, modality, fusion[0] if fusion else None))
    have = {d["name"] for d in list_heads(index)}
    heads = []
    for spec in specs:
        name = f"bench-{spec.name}"
        if name not in have:
            print(f"training head {name} ...", file=sys.stderr)
            train_head(index, spec, name=name, wait=None)
            index = GenreIndex.open(args.index)
        heads.append((spec, name))

    Y = index.labels.astype(bool)
    rng = np.random.default_rng(args.seed)
    labelled = np.flatnonzero(Y.any(axis=1))
    n = int(round(args.rate * len(labelled)))
    multi = np.flatnonzero(Y.sum(axis=1) >= 2)
    random_p = n / len(labelled)
    cases = []
    for draw in ("uniform", "frequency"):
        rows = rng.choice(labelled, size=n, replace=False)
        cases.append(
            (f"wrong sets ({draw} draw)", wrong_sets(Y, rows, rng, draw == "frequency"), rows, None)
        )
    rows = rng.choice(multi, size=n, replace=False)
    noisy, dropped = dropped_genre(Y, rows, rng)
    cases.append(("one genre dropped", noisy, rows, dropped))

    table = []
    for spec, name in heads:
        for label, noisy, rows, dropped in cases:
            t0 = time.perf_counter()
            result = audit(index, head=name, k=n, neighbours=0, labels=noisy)
            wall = time.perf_counter() - t0
            planted = {index.ids[i] for i in rows}
            top = [f.id for f in result.findings]
            hits = sum(1 for i in top if i in planted)
            extra = ""
            if dropped is not None:  # of the hits, how often the dropped genre is named missing
                genres = index.genres
                want = {index.ids[i]: genres[j] for i, j in dropped.items()}
                named = sum(
                    1
                    for f in result.findings
                    if f.id in want
                    and any(x.kind == "missing" and x.genre == want[f.id] for x in f.issues)
                )
                extra = f"{named}/{hits} name the dropped genre"
            table.append(
                [
                    spec.name,
                    label,
                    str(n),
                    f"{hits / n:.3f}",
                    f"{random_p:.3f}",
                    str(result.n_flagged),
                    extra,
                    f"{wall:.0f}",
                ]
            )
            print(" | ".join(table[-1]), file=sys.stderr)

    command = "python benchmarks/audit.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    headers = [
        "head spec",
        "corruption",
        "k = changed",
        "precision@k",
        "random",
        "movies flagged",
        "note",
        "audit s",
    ]
    lines = [
        "# Label audit: precision at k on planted label errors (../shared/data/posters)",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; CPU: {cpu_name()}"
        " (2 cores, shared with other work)",
        f"- index: {len(index.ids)} movies, {len(labelled)} labelled, {len(index.genres)} genres; "
        "sets " + ", ".join(f"{s.modality}:{s.encoder}" for s in index.sets),
        f"- each corruption changes {n} movies ({args.rate:.0%} of the labelled), seed "
        f"{args.seed}; the audit ranks every labelled movie by its held-out scores (5 folds) and "
        "k = the number changed",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in table),
        "",
        "Random: the share of movies changed. Target: precision@k >= 0.5 on wrong sets.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
