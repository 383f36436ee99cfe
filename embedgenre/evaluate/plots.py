"""Report figures (PNG, matplotlib Agg backend): per-genre F1, PR curves, co-occurrence, few-shot."""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np

from embedgenre.store import atomic

logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, **kw) -> None:
    """Render ``fig`` as PNG and write it atomically to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, **kw)
    atomic.write_bytes(path, buf.getvalue())


def row_label(r: dict) -> str:
    """Short legend text of a result row, e.g. ``linear · poster · cnn:efficientnet-lite0``."""
    parts = [r["method"], r["modality"]]
    if r.get("encoder") and r["encoder"] != "-":
        parts.append(r["encoder"])
    return " · ".join(parts)


def plot_per_genre_f1(
    per_genre: list[dict], rows: list[dict], path: Path, genres: list[str]
) -> Path:
    """Grouped horizontal bars: F1 per genre (most frequent at the top) for the given rows."""
    plt = _pyplot()
    index = {
        (p["method"], p["modality"], p["encoder"], p["subset"], p["genre"]): p for p in per_genre
    }
    support = {g: 0 for g in genres}
    for p in per_genre:
        if p["subset"] == "all":
            support[p["genre"]] = max(support[p["genre"]], p["support"])
    shown = [g for g in sorted(genres, key=lambda g: -support[g]) if support[g] > 0]
    n, m = len(shown), max(1, len(rows))
    height = 0.8 / m
    fig, ax = plt.subplots(figsize=(9, max(4, 0.42 * n + 1.5)))
    cmap = plt.get_cmap("tab10")
    y = np.arange(n)
    for j, r in enumerate(rows):
        vals = [
            index.get((r["method"], r["modality"], r["encoder"], "all", g), {}).get("f1", 0.0)
            for g in shown
        ]
        ax.barh(
            y + (j - (m - 1) / 2) * height,
            vals,
            height=height,
            color=cmap(j % 10),
            label=f"{row_label(r)} (micro-F1 {r['micro_f1']:.2f})",
        )
    ax.set_yticks(y, [f"{g} ({support[g]})" for g in shown])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 on the test set")
    ax.set_ylabel("genre (test positives)")
    ax.set_title("Per-genre F1 by method")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08 - 2.0 / max(n, 4) / 4),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    _save(fig, path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_pr_curves(curves: list[tuple[str, np.ndarray, np.ndarray, float]], path: Path) -> Path:
    """Micro-averaged precision-recall curves: ``(label, precision, recall, AP)`` each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab10")
    for j, (label, precision, recall, ap) in enumerate(curves):
        ax.plot(
            recall,
            precision,
            color=cmap(j % 10),
            lw=1.8,
            label=f"{label} (AP {ap:.2f})",
            ls="--" if label.startswith("prior") else "-",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (micro-averaged over genres)")
    ax.set_ylabel("precision (micro-averaged over genres)")
    ax.set_title("Precision-recall of the best methods (test set)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_cooccurrence(Y: np.ndarray, genres: list[str], path: Path) -> Path:
    """Heat map of P(column genre | row genre) over all items; row labels carry the counts."""
    plt = _pyplot()
    Y = np.asarray(Y, dtype=np.int64)
    counts = Y.sum(axis=0)
    keep = np.flatnonzero(counts > 0)
    keep = keep[np.argsort(-counts[keep], kind="stable")]
    C = Y[:, keep].T @ Y[:, keep]
    cond = C / np.maximum(np.diag(C)[:, None], 1)
    np.fill_diagonal(cond, np.nan)
    n = len(keep)
    size = max(6, 0.36 * n + 3)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(
        np.ma.masked_invalid(cond), cmap="viridis", vmin=0, vmax=max(0.01, np.nanmax(cond))
    )
    names = [genres[j] for j in keep]
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{g} ({int(counts[j])})" for g, j in zip(names, keep)], fontsize=8)
    ax.set_xlabel("also labelled with this genre")
    ax.set_ylabel("movies of this genre (count)")
    ax.set_title("Genre co-occurrence: share of each row's movies that also carry the column genre")
    ax.title.set_fontsize(10)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("P(column genre | row genre)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_fewshot(fewshot: list[dict], path: Path) -> Path:
    """Few-shot curves: micro-F1 and mAP vs k per genre (mean ± std over seeds).

    ``fewshot`` rows: method, modality, encoder, k (int, "all", or 0 = zero-shot), seed,
    micro_f1, map. Zero-shot rows (k = 0) are drawn as stars at the left edge.
    """
    plt = _pyplot()
    ks = sorted({r["k"] for r in fewshot if r["k"] not in ("all", 0)})
    has_all = any(r["k"] == "all" for r in fewshot)
    positions: dict = {0: 0}
    positions.update({k: i + 1 for i, k in enumerate(ks)})
    if has_all:
        positions["all"] = len(ks) + 1
    series = sorted({(r["method"], r["modality"], r["encoder"]) for r in fewshot if r["k"] != 0})
    zero = [r for r in fewshot if r["k"] == 0]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), sharex=True)
    cmap = plt.get_cmap("tab10")
    methods = sorted({s[0] for s in series})
    for metric, ax, title in (("micro_f1", axes[0], "micro-F1"), ("map", axes[1], "mAP")):
        for s in series:
            xs, means, stds = [], [], []
            for k in list(ks) + (["all"] if has_all else []):
                vals = _values(fewshot, s, k, metric)
                if vals:
                    xs.append(positions[k])
                    means.append(float(np.mean(vals)))
                    stds.append(float(np.std(vals)))
            if not xs:
                continue
            m_a, s_a = np.array(means), np.array(stds)
            color = cmap(methods.index(s[0]) % 10)
            ls = "-" if s[1] == "poster" else "--"
            ax.plot(xs, m_a, marker="o", ms=4, color=color, ls=ls, label=f"{s[0]} · {s[1]}")
            ax.fill_between(xs, m_a - s_a, m_a + s_a, color=color, alpha=0.12)
        for z in zero:
            val = z.get(metric)
            if val is not None and not math.isnan(val):
                ax.plot(
                    [0],
                    [val],
                    marker="*" if z["modality"] == "poster" else "P",
                    ms=12,
                    ls="none",
                    color="black",
                    label=f"zero-shot · {z['modality']}",
                )
        ax.set_xticks(list(positions.values()), [str(k) for k in positions])
        ax.set_xlabel("labelled examples per genre (k; 0 = zero-shot)")
        ax.set_ylabel(f"{title} on the test set")
        ax.set_title(f"Few-shot: {title} vs labelled examples per genre")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for h, lab in zip(*axes[1].get_legend_handles_labels()):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    ncol = min(5, max(1, len(labels)))
    rows = math.ceil(len(labels) / ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.suptitle(
        "Few-shot curves: mean ± std over seeds (solid = poster, dashed = plot; "
        "decisions = top-r genres per movie)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.04 + 0.045 * rows, 1, 1))
    _save(fig, path)
    plt.close(fig)
    return path


def _values(rows: list[dict], series: tuple, k, metric: str) -> list[float]:
    return [
        float(r[metric])
        for r in rows
        if (r["method"], r["modality"], r["encoder"]) == series
        and r["k"] == k
        and r[metric] is not None
        and not math.isnan(r[metric])
    ]
