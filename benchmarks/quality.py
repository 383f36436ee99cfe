"""Genre-prediction quality on the shared poster catalog: every method on one held-out 20%.

Runs `embedgenre evaluate` (library call, same code) on the development index built by the
`index` command with its defaults (EfficientNet-Lite0 posters + hybrid:all-MiniLM-L6-v2 plots),
plus whatever other sets the index holds (e.g. EfficientNet-Lite2 posters, plain MiniLM plots:
they get their own rows, fusion uses the defaults), checks the quality targets, and writes
benchmarks/results/quality.md with the command, date, wall time and tables.

    python benchmarks/quality.py [--index indexes/posters-dev] [--report reports/quality]

Targets on the held-out 20% (plot and fusion targets judged on test items with a plot):
best poster-only micro-F1 >= 0.50 and mAP >= 0.27 (EfficientNet-Lite0); best plot-only micro-F1
>= 0.63; best poster+plot micro-F1 >= 0.65 and mAP >= 0.57; every trained method above every
trivial baseline on micro-F1 and macro-F1.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_INDEX = ROOT / "indexes" / "posters-dev"
LITE0 = "cnn:efficientnet-lite0"


def _best(rows, pred, metric):
    picked = [r for r in rows if pred(r) and r[metric] is not None]
    return max(picked, key=lambda r: r[metric]) if picked else None


def check_targets(rows: list[dict]) -> list[list[str]]:
    """(target, measured, row, verdict) lines of the quality targets."""
    wp = "with_plot" if any(r["subset"] == "with_plot" for r in rows) else "all"
    out = []

    def line(name, row, metric, goal):
        if row is None:
            out.append([name, "–", "no such row", "MISSING"])
            return
        val = row[metric]
        label = f"{row['method']} · {row['modality']} · {row['encoder']} ({row['subset']})"
        out.append([name, f"{val:.3f}", label, "pass" if val >= goal else f"MISS (< {goal})"])

    lite0 = lambda r: r["modality"] == "poster" and r["encoder"] == LITE0 and r["subset"] == "all"  # noqa: E731
    line(
        "best poster-only micro-F1 >= 0.50 (Lite0)",
        _best(rows, lite0, "micro_f1"),
        "micro_f1",
        0.50,
    )
    line("best poster-only mAP >= 0.27 (Lite0)", _best(rows, lite0, "map"), "map", 0.27)
    plot = lambda r: r["modality"] == "plot" and r["subset"] == wp  # noqa: E731
    line("best plot-only micro-F1 >= 0.63", _best(rows, plot, "micro_f1"), "micro_f1", 0.63)
    fused = lambda r: r["modality"] in ("early_fusion", "late_fusion") and r["subset"] == wp  # noqa: E731
    line("best poster+plot micro-F1 >= 0.65", _best(rows, fused, "micro_f1"), "micro_f1", 0.65)
    line("best poster+plot mAP >= 0.57", _best(rows, fused, "map"), "map", 0.57)
    return out


def trivial_check(rows: list[dict], subset: str = "all") -> tuple[int, list[str]]:
    """(number of trained rows checked, rows not above every trivial baseline on both F1s)."""
    trivial = [r for r in rows if r["modality"] == "labels" and r["subset"] == subset]
    top_micro = max(r["micro_f1"] for r in trivial)
    top_macro = max(r["macro_f1"] for r in trivial)
    trained = [r for r in rows if r["modality"] != "labels" and r["subset"] == subset]
    bad = [
        f"{r['method']} · {r['modality']} · {r['encoder']}: micro-F1 {r['micro_f1']:.3f} "
        f"(best trivial {top_micro:.3f}), macro-F1 {r['macro_f1']:.3f} (best trivial {top_macro:.3f})"
        for r in trained
        if not (r["micro_f1"] > top_micro and r["macro_f1"] > top_macro)
    ]
    return len(trained), bad


def best_by_encoder(rows: list[dict]) -> list[list[str]]:
    """Best micro-F1 and mAP of each single-modality embedding set (what each encoder adds)."""
    wp = "with_plot" if any(r["subset"] == "with_plot" for r in rows) else "all"
    out = []
    for modality, subset in (("poster", "all"), ("plot", wp)):
        sets = sorted({r["encoder"] for r in rows if r["modality"] == modality})
        for enc in sets:
            picked = [
                r
                for r in rows
                if r["modality"] == modality and r["encoder"] == enc and r["subset"] == subset
            ]
            f1 = max(picked, key=lambda r: r["micro_f1"])
            ap = max(picked, key=lambda r: r["map"] if r["map"] is not None else -1.0)
            out.append(
                [
                    modality,
                    enc,
                    f"{subset} ({f1['n_test']})",
                    f"{f1['micro_f1']:.3f} ({f1['method']})",
                    f"{ap['map']:.3f} ({ap['method']})",
                ]
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="index directory")
    ap.add_argument(
        "--report",
        type=Path,
        default=ROOT / "reports" / "quality",
        help="report directory (figures, json; not committed)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality.md")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shots", default="1,2,4,8,16,32,all")
    ap.add_argument("--fewshot-seeds", type=int, default=3)
    ap.add_argument("--cnn-epochs", type=int, default=6)
    ap.add_argument("--no-scratch-cnn", action="store_true")
    ap.add_argument("--thresholds", default="per_genre", choices=("per_genre", "global"))
    ap.add_argument("--folds", type=int, default=5, help="0: one validation part")
    ap.add_argument(
        "--from-report",
        action="store_true",
        help="write quality.md from the report directory's results.json of an earlier run "
        "(wall time: the evaluation's own timer) instead of evaluating again",
    )
    args = ap.parse_args(argv)

    from embedgenre.evaluate import EvalConfig, evaluate_index
    from embedgenre.evaluate.fewshot import parse_shots

    if args.from_report:
        import json

        res = json.loads((args.report / "results.json").read_text())
        wall = json.loads((args.report / "timings.json").read_text())["total_s"]
        return write_summary(args, argv, res, wall)
    if not (args.index / "manifest.json").exists():
        print(
            f"no index at {args.index}; build it first:\n  embedgenre index "
            "../shared/data/posters --out indexes/posters-dev\n(optionally add more sets to "
            "compare: --add --image-encoder cnn:efficientnet-lite2, --add --text-encoder "
            "st:all-MiniLM-L6-v2)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = EvalConfig(
        seed=args.seed,
        shots=tuple(parse_shots(args.shots)),
        fewshot_seeds=args.fewshot_seeds,
        cnn_epochs=args.cnn_epochs,
        scratch_cnn=not args.no_scratch_cnn,
        threshold_mode=args.thresholds,
        folds=args.folds or None,
    )
    t0 = time.perf_counter()
    ev = evaluate_index(args.index, config, report_dir=args.report)
    wall = time.perf_counter() - t0
    return write_summary(args, argv, ev.result, wall)


def write_summary(args, argv, res: dict, wall: float) -> int:
    """Check the targets and write quality.md from an evaluation's results."""
    from embedgenre.evaluate.report import (
        accuracy_caveat,
        fewshot_markdown,
        held_out,
        markdown_table,
        summary_table,
    )

    rows, info = res["rows"], res["info"]

    command = "python benchmarks/quality.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    targets = check_targets(rows)
    n_trained, below = trivial_check(rows)
    parts = [
        "# Genre prediction quality on ../shared/data/posters",
        "",
        f"- command: `{command.strip()}` (= `embedgenre evaluate {args.index.name} --seed "
        f"{args.seed} --shots {args.shots} --fewshot-seeds {args.fewshot_seeds} --cnn-epochs "
        f"{args.cnn_epochs}{' --no-scratch-cnn' if args.no_scratch_cnn else ''} --thresholds "
        f"{args.thresholds} --folds {args.folds}`)",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine: "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other work",
        f"- index: {info['n_items']} items, {info['n_genres']} genres; poster sets "
        f"{', '.join(info['poster_sets'])}; plot sets {', '.join(info['plot_sets'])}",
        f"- split: iterative stratification, seed {info['seed']}: test {info['n_test']} "
        f"({info['n_test_with_plot']} with a plot), train {info['n_train']}: {held_out(info)}",
        f"- wall time of the evaluation (encoding excluded): {wall:.0f} s",
        "",
        "## Targets",
        "",
        markdown_table(["target", "measured", "best row", "verdict"], targets),
        "",
        f"Trained rows above every trivial baseline on both micro-F1 and macro-F1 (all test "
        f"items): {n_trained - len(below)} of {n_trained}.",
    ]
    if below:
        parts += ["", "Not above every trivial baseline:", ""] + [f"- {b}" for b in below]
    parts += [
        "",
        "## What each encoder gives on its own (best row of each embedding set)",
        "",
        markdown_table(
            ["modality", "embedding set", "test items (n)", "best micro-F1", "best mAP"],
            best_by_encoder(rows),
        ),
    ]
    for subset, title in (("all", "All test items"), ("with_plot", "Test items with a plot")):
        headers, body = summary_table(rows, subset)
        if body:
            parts += ["", f"## {title} (sorted by micro-F1)", "", markdown_table(headers, body)]
    caveat = accuracy_caveat(rows)
    if caveat:
        parts += ["", caveat]
    if res["skipped"]:
        parts += ["", "## Skipped", ""] + [
            f"- {s['method']} · {s['modality']} · {s['encoder']}: {s['reason']}"
            for s in res["skipped"]
        ]
    if res["fewshot"]:
        parts += [
            "",
            "## Few-shot (k labelled examples per genre; decisions = top-"
            f"{info['top_k']} genres per movie; mean ± std over {args.fewshot_seeds} seeds)",
            "",
            fewshot_markdown(res["fewshot"], "micro_f1"),
            "",
            fewshot_markdown(res["fewshot"], "map"),
        ]
    parts += [
        "",
        f"Figures and per-genre tables: `{args.report.name}/` of the report directory "
        "(not committed; rerun the command to produce them).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts))
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
