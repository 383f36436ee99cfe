"""Writing an evaluation to a report directory: JSON, CSV, markdown tables, the split.

Files (``write_report``):

| file | what |
|---|---|
| ``results.json`` | everything below in one document (deterministic: no timings, no dates) |
| ``results.csv`` | one row per method x modality x encoder x subset, every summary metric |
| ``summary.md`` | the summary tables sorted by micro-F1, skipped methods, few-shot table |
| ``per_genre.md``, ``per_genre.csv`` | precision, recall, F1 and support per genre |
| ``fewshot.csv`` | every few-shot run (method, modality, k, seed, metrics) |
| ``split.json`` | the item ids of the train, validation and test parts (reusable with ``--split``) |
| ``timings.json`` | fit/predict seconds per row and the total wall time |

:func:`check_report_dir` says before an evaluation whether its report can be written there.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.errors import OutputPathError, WriteError
from embedgenre.evaluate.metrics import METRIC_NAMES
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

ROW_KEYS: tuple[str, ...] = ("method", "modality", "encoder", "subset", "n_test")

_HEADERS = {
    "micro_f1": "micro-F1",
    "macro_f1": "macro-F1",
    "samples_f1": "samples-F1",
    "weighted_f1": "weighted-F1",
    "map": "mAP",
    "hamming_loss": "Hamming",
    "label_accuracy": "label acc.",
    "subset_accuracy": "subset acc.",
}


def fmt(value: Any, digits: int = 3) -> str:
    """A metric as text: fixed decimals, an en dash for missing (NaN/None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def sorted_rows(rows: list[dict], subset: str) -> list[dict]:
    """Rows of one subset, best micro-F1 first (ties: macro-F1, then name, for a stable order)."""
    picked = [r for r in rows if r["subset"] == subset]
    return sorted(
        picked,
        key=lambda r: (-r["micro_f1"], -r["macro_f1"], r["method"], r["modality"], r["encoder"]),
    )


def markdown_table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def summary_table(rows: list[dict], subset: str) -> tuple[list[str], list[list[str]]]:
    """(headers, body) of the summary table of ``subset``, sorted by micro-F1."""
    headers = ["method", "modality", "encoder", "n"] + [_HEADERS[m] for m in METRIC_NAMES]
    body = [
        [r["method"], r["modality"], r["encoder"], str(r["n_test"])]
        + [fmt(r[m]) for m in METRIC_NAMES]
        for r in sorted_rows(rows, subset)
    ]
    return headers, body


def accuracy_caveat(rows: list[dict], subset: str = "all") -> str | None:
    """One sentence on why per-label accuracy misleads, with the predict-nothing row as proof."""
    nothing = next((r for r in rows if r["method"] == "none" and r["subset"] == subset), None)
    trained = [r for r in rows if r["subset"] == subset and r["modality"] not in ("labels",)]
    if nothing is None:
        return None
    beaten = sum(r["label_accuracy"] < nothing["label_accuracy"] for r in trained)
    return (
        f"Per-label accuracy alone misleads: predicting no genre at all scores "
        f"{nothing['label_accuracy']:.3f} per-label accuracy (it is right about every absent "
        f"genre, and {nothing['hamming_loss']:.1%} of the label matrix is positive) while its "
        f"micro-F1 is {nothing['micro_f1']:.3f}"
        + (
            f"; {beaten} of the {len(trained)} methods in this table have lower per-label accuracy."
            if beaten
            else "; rank methods by F1 and mAP instead."
        )
    )


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


@contextmanager
def _writing(path: Path):
    """Turn an OSError while writing ``path`` (disk full, no permission) into OutputPathError."""
    try:
        yield
    except WriteError as e:  # an atomic write: says what failed and the fix
        raise OutputPathError(f"Cannot write the report: {e}") from e
    except OSError as e:
        raise OutputPathError(
            f"Cannot write the report to {path}: {e.strerror or e}. Free some disk space or "
            "give a report directory you can write to, then run the evaluation again."
        ) from e


def _write_text(path: Path, text: str) -> None:
    with _writing(path):
        atomic.write_text(path, text)


def _write_csv(path: Path, records: list[dict], columns: list[str]) -> None:
    with _writing(path), atomic.open_for_write(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if _clean(r.get(k)) is None else _clean(r.get(k))) for k in columns})


def per_genre_markdown(
    per_genre: list[dict], rows: list[dict], genres: list[str], top: int = 6
) -> str:
    """Per-genre F1 of the ``top`` best rows (subset "all"), plus each row's P/R/F1 detail."""
    best = [r for r in sorted_rows(rows, "all") if r["modality"] != "labels"][:top]
    name = lambda r: f"{r['method']} {r['modality']} {r['encoder']}".replace(" -", "")  # noqa: E731
    index = {
        (p["method"], p["modality"], p["encoder"], p["subset"], p["genre"]): p for p in per_genre
    }
    headers = ["genre", "support"] + [f"F1 {name(r)}" for r in best]
    body = []
    for g in genres:
        cells = [index.get((r["method"], r["modality"], r["encoder"], "all", g)) for r in best]
        support = next((c["support"] for c in cells if c), 0)
        body.append([g, str(support)] + [fmt(c["f1"]) if c else "–" for c in cells])
    body.sort(key=lambda cells: -int(cells[1]))
    parts = ["# Per-genre F1 (test set, all items)", "", markdown_table(headers, body), ""]
    for r in best:
        parts += [f"## {name(r)}", ""]
        detail = [
            [g, fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"])]
            for g in genres
            if (c := index.get((r["method"], r["modality"], r["encoder"], "all", g)))
        ]
        parts += [markdown_table(["genre", "precision", "recall", "F1", "support"], detail), ""]
    return "\n".join(parts)


def held_out(info: dict) -> str:
    """How thresholds were chosen, in words, from a result's ``info``."""
    if info.get("folds"):
        return (
            f"thresholds, MLP epochs and late-fusion weights chosen on {info['folds']}-fold "
            "out-of-fold predictions of the training items, then each head fitted on all of them"
        )
    return f"of which {info['n_val']} held out to choose thresholds"


def summary_markdown(result: dict) -> str:
    """The human-readable summary: tables by subset, the accuracy caveat, skipped, few-shot."""
    rows = result["rows"]
    info = result["info"]
    parts = [
        "# Genre prediction: every method on one split",
        "",
        f"Index: `{info['index']}` — {info['n_items']} items, {info['n_genres']} genres; "
        f"test {info['n_test']} items ({info['n_test_with_plot']} with a plot), "
        f"train {info['n_train']} ({held_out(info)}). "
        f"Split seed {info['seed']}; ids in `split.json`.",
        "",
        "Rows marked *labels* are the trivial baselines (they never look at a poster or a plot). "
        "On the *all* subset, plot and fusion methods score items without a plot on the poster "
        "with the same method.",
        "",
    ]
    caveat = accuracy_caveat(rows)
    if info["n_test_with_plot"] == info["n_test"]:
        parts += ["Every test item has a plot, so the with-plot subset is the whole test set.", ""]
    for subset, title in (("all", "All test items"), ("with_plot", "Test items with a plot")):
        if not any(r["subset"] == subset for r in rows):
            continue
        headers, body = summary_table(rows, subset)
        parts += [f"## {title} (sorted by micro-F1)", "", markdown_table(headers, body), ""]
    if caveat:
        parts += [caveat, ""]
    if result.get("skipped"):
        parts += ["## Skipped", ""]
        parts += [
            f"- {s['method']} · {s['modality']} · {s['encoder']}: {s['reason']}"
            for s in result["skipped"]
        ]
        parts.append("")
    if result.get("fewshot_table"):
        parts += [
            "## Few-shot (k labelled examples per genre; mean ± std over seeds; k = 0 is zero-shot)",
            "",
            result["fewshot_table"],
            "",
            "A k-per-genre sample visits genres from rarest to most common and adds random movies "
            "of each genre until it has k (or all there are); movies carry several genres, so "
            "common genres end up with more than k.",
            "",
        ]
    return "\n".join(parts)


def fewshot_markdown(fewshot: list[dict], metric: str = "micro_f1") -> str:
    """Table: one line per method x modality, one column per k, ``mean ± std`` of ``metric``."""
    if not fewshot:
        return ""
    ks = sorted({r["k"] for r in fewshot if r["k"] != "all"}) + (
        ["all"] if any(r["k"] == "all" for r in fewshot) else []
    )
    series = sorted({(r["method"], r["modality"], r["encoder"]) for r in fewshot})
    body = []
    for s in series:
        cells = [s[0], s[1], s[2]]
        for k in ks:
            vals = [
                r[metric]
                for r in fewshot
                if (r["method"], r["modality"], r["encoder"]) == s
                and r["k"] == k
                and r[metric] is not None
                and not math.isnan(r[metric])
            ]
            if not vals:
                cells.append("–")
            elif len(vals) == 1:
                cells.append(fmt(float(vals[0])))
            else:
                cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}")
        body.append(cells)
    name = _HEADERS.get(metric, metric)
    return markdown_table(["method", "modality", "encoder"] + [f"{name} k={k}" for k in ks], body)


def check_output_dir(directory: str | Path, what: str | None = None) -> Path:
    """Raise OutputPathError unless files can be written in ``directory`` (missing folders are
    made when writing): no part of the path is a file and the deepest existing folder takes a
    new file. ``what`` names the path in messages (default: the path). Creates nothing."""
    directory = Path(directory)
    what = what or str(directory)
    probe = directory
    while not (probe.exists() or probe.is_symlink()) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        kind = "a broken link" if probe.is_symlink() else "a special file"
        kind = "a file" if probe.is_file() else kind
        problem = "not a folder" if probe == directory else "so no folder can be made in it"
        raise OutputPathError(
            f"{what}: {probe} is {kind}, {problem}; give a path whose "
            "existing parts are folders (missing ones are made)."
        )
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".embedgenre-write-check-"):
            pass
    except OSError as e:
        raise OutputPathError(
            f"{what}: no file can be created in {probe} ({e.strerror or e}); give a path in a "
            "folder you can write to."
        ) from e
    return directory


def check_report_dir(path: str | Path, what: str = "report directory") -> Path:
    """Raise OutputPathError unless :func:`write_report` can write into ``path``; call it before
    an evaluation so a bad path is found before the work, not after it."""
    return check_output_dir(path, f"{what} {path}")


def write_report(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file of ``result`` (see module doc) into ``out_dir``; returns the paths.

    A failed write (disk full, no permission) raises OutputPathError naming the file.
    """
    out = Path(out_dir)
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out / name
        for name in (
            "results.json",
            "results.csv",
            "summary.md",
            "per_genre.md",
            "per_genre.csv",
            "fewshot.csv",
            "split.json",
            "timings.json",
        )
    }
    result = dict(result)
    result["fewshot_table"] = "\n\n".join(
        t
        for t in (
            fewshot_markdown(result.get("fewshot", []), "micro_f1"),
            fewshot_markdown(result.get("fewshot", []), "map"),
        )
        if t
    )
    doc = {k: v for k, v in result.items() if k not in ("timings", "fewshot_table")}
    _write_text(paths["results.json"], json.dumps(_clean(doc), indent=1) + "\n")
    cols = list(ROW_KEYS) + list(METRIC_NAMES)
    _write_csv(paths["results.csv"], result["rows"], cols)
    _write_csv(
        paths["per_genre.csv"],
        result["per_genre"],
        [
            "method",
            "modality",
            "encoder",
            "subset",
            "genre",
            "precision",
            "recall",
            "f1",
            "support",
        ],
    )
    _write_csv(
        paths["fewshot.csv"],
        result.get("fewshot", []),
        ["method", "modality", "encoder", "k", "seed", "n_train", "micro_f1", "macro_f1", "map"],
    )
    _write_text(paths["summary.md"], summary_markdown(result))
    _write_text(
        paths["per_genre.md"],
        per_genre_markdown(result["per_genre"], result["rows"], result["info"]["genres"]),
    )
    _write_text(paths["split.json"], json.dumps(result["split"], indent=1) + "\n")
    _write_text(
        paths["timings.json"], json.dumps(_clean(result.get("timings", {})), indent=1) + "\n"
    )
    return paths
