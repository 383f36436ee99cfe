"""Quality of the trained heads with their shipped defaults on a fixed held-out 20% of an index.

The test split is ``iterative_split(index.labels, 0.2, seed=0)`` over all items; each head is
trained with ``HeadSpec.fit``, as ``embedgenre train`` does, on the rest (thresholds chosen on a validation part carved
from the training part only, then refit on the whole training part unless ``--no-refit``) and
scored once on the test items. ``--seeds 0,1,2,3,4`` repeats it on other test splits and
adds the mean and spread: on ~700 test items with a plot, mAP moves by several points from
one split to another (rare genres have a handful of test positives). Poster rows are scored on every test item; plot and fusion rows
on the test items that have a plot ("with_plot"). The "top-2" row per subset predicts the two
most frequent training genres for every item (its mAP ranks by the training genre frequency).

    python benchmarks/heads_quality.py                 # indexes/posters-dev, linear + mlp
    python benchmarks/heads_quality.py --methods linear --no-refit --threshold global
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def scores(Y: np.ndarray, P: np.ndarray, D: np.ndarray) -> tuple[float, float, float]:
    from embedgenre.predictors.metrics import f1, mean_average_precision

    return f1(Y, D, "micro_f1"), f1(Y, D, "macro_f1"), mean_average_precision(Y, P)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--index", default=str(ROOT / "indexes" / "posters-dev"))
    ap.add_argument("--image-encoder", default=None, help="poster set (default: the index's)")
    ap.add_argument("--text-encoder", default=None, help="plot set (default: the index's)")
    ap.add_argument("--methods", default="linear,mlp", help="comma-separated")
    ap.add_argument("--fusions", default="late,early", help="comma-separated; '' for none")
    ap.add_argument("--threshold", default="per_genre", choices=["global", "per_genre", "fixed"])
    ap.add_argument(
        "--no-refit", action="store_true", help="keep the model fitted on 80%% of train"
    )
    ap.add_argument(
        "--folds",
        type=int,
        default=None,
        help="out-of-fold thresholds over K folds (default: train's); 0 = one validation split",
    )
    ap.add_argument(
        "--seeds",
        default="0",
        help="comma-separated test-split seeds; several print mean and spread",
    )
    args = ap.parse_args()

    from embedgenre.features import set_input
    from embedgenre.heads.training import head_sets
    from embedgenre.predictors import DEFAULT_FOLDS, HeadSpec
    from embedgenre.splits import iterative_split
    from embedgenre.store import GenreIndex

    warnings.simplefilter("ignore", UserWarning)  # genres absent from a training part
    folds = DEFAULT_FOLDS if args.folds is None else (args.folds or None)
    seeds = [int(x) for x in args.seeds.split(",")]
    index = GenreIndex.open(args.index)
    n = len(index.ids)
    plot_set = index.get_set("plot", args.text_encoder)
    has_plot = np.zeros(n, dtype=bool)
    has_plot[plot_set.rows] = True
    poster_enc = index.get_set("poster", args.image_encoder).encoder
    jobs = [(m, mod, None) for m in args.methods.split(",") for mod in ("poster", "plot")]
    jobs += [(m, "both", f) for m in args.methods.split(",") for f in args.fusions.split(",") if f]
    data = {}
    for _, modality, _ in jobs:
        if modality not in data:
            sets = head_sets(index, modality, args.image_encoder, args.text_encoder)
            data[modality] = set_input(index.labels, sets)

    results: dict[tuple, list] = {}  # (method, modality, subset) -> [(micro, macro, mAP, s)]
    for seed in seeds:
        test = np.zeros(n, dtype=bool)
        test[iterative_split(index.labels, 0.2, seed=seed)[1]] = True
        subsets = {"all": test, "with_plot": test & has_plot}
        for name, mask in subsets.items():
            train_mask = ~test & (has_plot if name == "with_plot" else True)
            freq = index.labels[train_mask].sum(axis=0).astype(np.float64)
            Y = index.labels[mask]
            D = np.zeros_like(Y)
            D[:, np.argsort(-freq, kind="stable")[:2]] = 1
            P = np.broadcast_to(freq / freq.sum(), Y.shape)
            results.setdefault(("top-2 (trivial)", "-", name), []).append((*scores(Y, P, D), 0.0))
        for method, modality, fusion in jobs:
            X, Y, rows = data[modality]
            fit = ~test[rows] & (Y.sum(axis=1) > 0)
            dims = (X.shape[1] - plot_set.dim, plot_set.dim) if fusion else None
            spec = HeadSpec(method, modality, fusion, threshold=args.threshold, folds=folds)
            t0 = time.perf_counter()
            pred = spec.tuner(int(fit.sum()), dims).set_params(refit=not args.no_refit)
            pred.fit(X[fit], Y[fit], classes=index.genres)
            seconds = time.perf_counter() - t0
            subset = "all" if modality == "poster" else "with_plot"
            ev = subsets[subset][rows]
            P = pred.predict_proba(X[ev])
            label = modality if fusion is None else f"both ({fusion})"
            results.setdefault((method, label, subset), []).append(
                (*scores(Y[ev], P, pred.predict(X[ev])), seconds)
            )
            print(f"  seed {seed} {method} {label}: {seconds:.0f} s", file=sys.stderr, flush=True)

    how = f"{folds}-fold out-of-fold" if folds else "one validation split"
    refit = "no refit" if args.no_refit and not folds else "fitted on all training items"
    print(
        f"\nHeads on {Path(args.index).name}: poster {poster_enc}, plot {plot_set.encoder}; "
        f"test = 20% (iterative stratification, seed {seeds[0]}); thresholds {args.threshold} "
        f"on {how} predictions of the training part; {refit}\n"
    )
    print("| method | modality | test subset | micro-F1 | macro-F1 | mAP | fit s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (method, label, subset), runs in results.items():
        mi, ma, mp, sec = runs[0]
        print(f"| {method} | {label} | {subset} | {mi:.3f} | {ma:.3f} | {mp:.3f} | {sec:.0f} |")
    if len(seeds) > 1:
        print(f"\nMean ± standard deviation over test-split seeds {args.seeds}:\n")
        print("| method | modality | test subset | micro-F1 | macro-F1 | mAP |")
        print("|---|---|---|---:|---:|---:|")
        for (method, label, subset), runs in results.items():
            a = np.array(runs)[:, :3]
            cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(a.mean(0), a.std(0)))
            print(f"| {method} | {label} | {subset} | {cells} |")


if __name__ == "__main__":
    main()
