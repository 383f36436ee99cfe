"""Evaluation: every method on one split, honest metrics, report tables and plots.

Modules follow the data flow: :mod:`.data` (what is evaluated) -> :mod:`.split` (train / test,
from a seed or a split file) -> :mod:`.runner` (fit every method of :mod:`.methods` with
thresholds, predict, fuse; :mod:`.baselines` and :mod:`.scratch_cnn` alongside) ->
:mod:`.scoring` (rows of :mod:`.metrics` per test subset) and :mod:`.fewshot` (refits on k
examples per genre) -> :mod:`.report` (files) and :mod:`.plots` (PNGs).

Typical use::

    from embedgenre.evaluate import EvalConfig, evaluate_index
    ev = evaluate_index("indexes/posters", EvalConfig(seed=0), report_dir="reports/posters")
"""

from __future__ import annotations

from embedgenre.evaluate.api import evaluate_index, make_plots
from embedgenre.evaluate.runner import METHODS, MODALITIES, EvalConfig, Evaluation, evaluate

__all__ = [
    "METHODS",
    "MODALITIES",
    "EvalConfig",
    "Evaluation",
    "evaluate",
    "evaluate_index",
    "make_plots",
]
