"""One call for the whole job: read an index, evaluate, write the report and its figures."""

from __future__ import annotations

import logging
from pathlib import Path

from embedgenre.evaluate import plots
from embedgenre.evaluate.data import from_index
from embedgenre.evaluate.metrics import micro_pr_curve
from embedgenre.evaluate.report import check_report_dir, sorted_rows, write_report
from embedgenre.evaluate.runner import EvalConfig, Evaluation, Progress, evaluate

logger = logging.getLogger(__name__)

#: How many of the best rows the per-genre and PR figures show.
BEST_IN_FIGURES = 6


def _best_rows(rows: list[dict], n: int, need_scores: bool = False) -> list[dict]:
    """Best rows of subset "all" by micro-F1, at most one per (method, modality), no baselines."""
    picked, seen = [], set()
    for r in sorted_rows(rows, "all"):
        if r["modality"] == "labels" or (r["method"], r["modality"]) in seen:
            continue
        if need_scores and r["map"] is None:
            continue
        seen.add((r["method"], r["modality"]))
        picked.append(r)
        if len(picked) == n:
            break
    return picked


def make_plots(ev: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write the report figures of ``ev`` into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = ev.result
    genres = res["info"]["genres"]
    paths: dict[str, Path] = {}
    best = _best_rows(res["rows"], BEST_IN_FIGURES)
    if best:
        paths["per_genre_f1"] = plots.plot_per_genre_f1(
            res["per_genre"], best, out / "per_genre_f1.png", genres
        )
    curves = []
    for r in _best_rows(res["rows"], BEST_IN_FIGURES - 1, need_scores=True) + [
        r for r in res["rows"] if r["method"] == "prior" and r["subset"] == "all"
    ]:
        key = (r["method"], r["modality"], r["encoder"])
        if key in ev.test_outputs:
            Y, P = ev.test_outputs[key]
            precision, recall, ap = micro_pr_curve(Y, P)
            curves.append((plots.row_label(r), precision, recall, ap))
    if curves:
        paths["pr_curves"] = plots.plot_pr_curves(curves, out / "pr_curves.png")
    paths["cooccurrence"] = plots.plot_cooccurrence(ev.labels, genres, out / "cooccurrence.png")
    if res.get("fewshot"):
        paths["fewshot"] = plots.plot_fewshot(res["fewshot"], out / "fewshot.png")
    return paths


def evaluate_index(
    index_path: str | Path,
    config: EvalConfig | None = None,
    report_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Evaluate every method on the index at ``index_path``; with ``report_dir``, write the
    report files (:func:`embedgenre.evaluate.report.write_report`) and figures there.
    ``progress(done, total, what)`` is called before each fit."""
    if report_dir is not None:
        check_report_dir(report_dir)  # a bad path is found before the work, not after it
    ev = evaluate(from_index(index_path), config, progress)
    if report_dir is not None:
        write_report(ev.result, report_dir)
        make_plots(ev, report_dir)
        logger.info("report written to %s", report_dir)
    return ev
