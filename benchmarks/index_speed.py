"""Index the shared poster catalog with the default offline encoders and time it.

Measures, each as a fresh `embedgenre index` process (model loading included):

1. first run on the whole catalog: wall time, peak RSS, posters/s and plots/s, and posters/s as a
   fraction of the image encoder's FLOP-bound limit on this CPU (the model's FLOPs per poster,
   counted by torch, against this machine's fp32 matmul rate measured in the same run);
2. peak RSS on a catalog a quarter that size (memory must not grow with the catalog);
3. re-run on the unchanged catalog (target: at least 50x faster than the first run);
4. adding 100 new items to an index of the rest, vs encoding those 100 alone into a new index
   (target: at most 2x).

    python benchmarks/index_speed.py [--catalog ../shared/data/posters] [--limit N]

``--compare TREE`` instead times only the first index, alternating this checkout and another
one (an earlier commit's worktree, say) ``--repeat`` times each, and prints both and their ratio:
how much a change costs, measured back to back on one machine.

    git worktree add /tmp/before HEAD~5
    python benchmarks/index_speed.py --compare /tmp/before --repeat 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from encode_speed import gflops_per_image, matmul_gflops  # same folder

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CATALOG = ROOT.parent / "shared" / "data" / "posters"


def write_subset(catalog: Path, rows: list[dict], dest: Path) -> Path:
    """A catalog folder whose movies.csv lists ``rows`` with absolute poster paths."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "poster": str((catalog / r["poster"]).resolve())})
    return dest


def _cli_module(tree: Path) -> str:
    """The CLI's module in checkout ``tree``: ``cli.app`` before the CLI moved into the package."""
    return (
        "cli.app"
        if '"cli.app:main"' in (tree / "pyproject.toml").read_text()
        else "embedgenre.cli.app"
    )


def _python(tree: Path) -> str:
    """The checkout's own environment where it has one (an editable install maps the package to
    its own folder, whatever PYTHONPATH says), else this interpreter."""
    own = tree / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def run_index_measured(
    catalog: Path, out: Path, *extra: str, tree: Path = ROOT
) -> tuple[float, float, dict]:
    """Run `embedgenre index` in a new process; (wall seconds, peak RSS MiB, JSON summary).

    A small wrapper process runs it, so the peak RSS of its children is that run's alone.
    ``tree``: the checkout whose code runs (imported from there, first on the path).
    """
    code = (
        "import resource, subprocess, sys, json, time;"
        "t=time.perf_counter();"
        "p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w=time.perf_counter()-t;"
        "r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024;"
        "print(json.dumps({'rc':p.returncode,'wall':w,'rss':r,'out':p.stdout,'err':p.stderr[-3000:]}))"
    )
    cmd = [
        _python(tree),
        "-m",
        _cli_module(tree),
        "-q",
        "index",
        str(catalog),
        "--out",
        str(out),
        "--json",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *cmd], cwd=tree, capture_output=True, text=True, env=env
    )
    res = json.loads(proc.stdout)
    if res["rc"] != 0:
        sys.exit(f"index failed:\n{res['err']}")
    return res["wall"], res["rss"], json.loads(res["out"])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    ap.add_argument("--limit", type=int, default=None, help="index only the first N movies")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout to time against")
    ap.add_argument("--repeat", type=int, default=2, help="with --compare: runs of each")
    args = ap.parse_args()

    with open(args.catalog / "movies.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[: args.limit]
    if args.compare is not None:
        compare(args.catalog, rows, args.compare.resolve(), args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full = write_subset(args.catalog, rows, tmp / "full")
        quarter = write_subset(args.catalog, rows[: len(rows) // 4], tmp / "quarter")
        rest = write_subset(args.catalog, rows[:-100], tmp / "rest")
        new100 = write_subset(args.catalog, rows[-100:], tmp / "new100")

        wall1, rss1, s1 = run_index_measured(full, tmp / "idx")
        _, rss_q, _ = run_index_measured(quarter, tmp / "idx-quarter")
        wall_re, _, s_re = run_index_measured(full, tmp / "idx")
        run_index_measured(rest, tmp / "idx-inc")
        wall_add, _, s_add = run_index_measured(full, tmp / "idx-inc")
        wall_100, _, _ = run_index_measured(new100, tmp / "idx-100")

    sets = {s["modality"]: s for s in s1["sets"]}
    poster, plot = sets["poster"], sets["plot"]
    posters_s = poster["encoded"] / poster["seconds"]
    plots_s = plot["encoded"] / plot["seconds"]
    gflop = matmul_gflops()
    family, _, variant = poster["encoder"].partition(":")
    per_img = gflops_per_image(variant) if family == "cnn" else None
    bound = gflop / per_img if per_img else float("nan")

    encoded_again = sum(s["encoded"] for s in s_re["sets"])
    encoded_add = {s["modality"]: s["encoded"] for s in s_add["sets"]}
    lines = [
        f"catalog: {args.catalog} ({len(rows)} movies); encoders: {poster['encoder']}, {plot['encoder']}",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| first index, wall time | {wall1:.1f} s | < 120 s |",
        f"| first index, peak RSS | {rss1:.0f} MiB | < 2048 MiB |",
        f"| peak RSS on a quarter of the catalog | {rss_q:.0f} MiB | flat in catalog size |",
        f"| posters/s ({poster['encoder']}, incl. decode) | {posters_s:.1f} | |",
        f"| plots/s ({plot['encoder']}) | {plots_s:.1f} | |",
        f"| model GFLOP per poster (torch count) | {per_img:.3f} | |"
        if per_img
        else "| model GFLOP per poster | n/a | |",
        f"| CPU fp32 matmul rate | {gflop:.1f} GFLOP/s | |",
        f"| FLOP-bound posters/s / achieved | {bound:.1f} / {posters_s:.1f} = {posters_s / bound:.0%} | |",
        f"| re-run unchanged, wall | {wall_re:.2f} s ({wall1 / wall_re:.0f}x faster; {encoded_again} encoded) | >= 50x |",
        f"| add 100 items to index of the rest | {wall_add:.1f} s (encoded {encoded_add}) | |",
        f"| encode those 100 alone, new index | {wall_100:.1f} s | |",
        f"| add / alone | {wall_add / wall_100:.2f}x | <= 2x |",
    ]
    print("\n".join(lines))


def compare(catalog: Path, rows: list[dict], other: Path, repeat: int) -> None:
    """First index of ``rows``, alternating ``other`` and this checkout, ``repeat`` times each.

    A checkout whose CLI lives in the package (this layout) runs its own library but the CLI of
    the installed embedgenre; older checkouts run entirely from their own folder.
    """
    table = [
        "| run | checkout | first index | poster set | plot set | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    walls: dict[str, list[float]] = {"other": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        full = write_subset(catalog, rows, Path(tmp) / "full")
        for i in range(repeat):
            for label, tree in (("other", other), ("this", ROOT)):
                wall, rss, s = run_index_measured(full, Path(tmp) / f"idx-{label}-{i}", tree=tree)
                sets = {x["modality"]: x["seconds"] for x in s["sets"]}
                walls[label].append(wall)
                table.append(
                    f"| {i + 1} | {label} ({tree}) | {wall:.1f} s | {sets.get('poster', 0):.1f} s "
                    f"| {sets.get('plot', 0):.1f} s | {rss:.0f} MiB |"
                )
    ratios = [t / o for t, o in zip(walls["this"], walls["other"])]
    print(f"catalog: {catalog} ({len(rows)} movies)\n")
    print("\n".join(table))
    print(
        f"\nthis / other, per pair: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"mean {sum(ratios) / len(ratios):.3f}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
