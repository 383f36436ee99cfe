"""Run every method x modality x embedding set on one split and score it.

The flow: :class:`~embedgenre.evaluate.data.EvalData` -> split (:mod:`.split`) -> for each row a
:class:`~embedgenre.predictors.spec.HeadSpec` fitted on the training part with
:meth:`HeadSpec.fit`, the call ``embedgenre train`` makes (thresholds on out-of-fold
predictions, then a fit on every training item), on the inputs
:func:`embedgenre.features.head_input` builds -> predict test -> the scratch CNN on pixels and
the trivial baselines, tuned by the same :class:`~embedgenre.predictors.tuning.TunedThresholds`
-> metrics on the "all" and "with_plot" test subsets (:mod:`.scoring`) -> few-shot refits
(:mod:`.fewshot`). So a row scores the head ``train`` would save for that split.

On the "all" subset, plot predictions of items without a plot come from the same method on the
default poster set, so every row scores the same test items (fused heads score them with their
poster part, as a saved fused head does).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from embedgenre.errors import BadInputError, EmbedgenreError
from embedgenre.evaluate.data import EmbeddingView, EvalData
from embedgenre.evaluate.fewshot import fewshot_curve
from embedgenre.evaluate.pixels import load_poster_pixels
from embedgenre.evaluate.scoring import Output, score, with_fallback
from embedgenre.evaluate.split import make_split
from embedgenre.features import head_input
from embedgenre.names import EVAL_MODALITIES, METHODS
from embedgenre.predictors import HeadSpec, TunedThresholds
from embedgenre.predictors.baselines import TRIVIAL_KINDS, TrivialBaseline
from embedgenre.predictors.scratch_cnn import ScratchCNN
from embedgenre.splits import iterative_split

# progress(done, total, what): called before each fit and once when the run ends
Progress = Callable[[int, int, str], None]

logger = logging.getLogger(__name__)

MODALITIES = EVAL_MODALITIES
SCRATCH_ENCODER = "pixels:64x96"


@dataclass
class EvalConfig:
    """What to evaluate. ``shots``: k values (None = all training data); ``split``: a split
    document (``{"train": ids, "test": ids, "validation"?: ids}``) or None to draw one.
    ``folds``: thresholds (and MLP epochs, late-fusion weights) are chosen on out-of-fold
    predictions of the training part; None: on one validation part of ``val_size`` (a split
    document's "validation" ids, when it has them, are used as that part)."""

    methods: tuple[str, ...] = METHODS
    modalities: tuple[str, ...] = MODALITIES
    image_encoders: tuple[str, ...] | None = None
    text_encoders: tuple[str, ...] | None = None
    test_size: float = 0.2
    val_size: float = 0.15
    folds: int | None = 5
    split: dict | None = None
    seed: int = 0
    shots: tuple[int | None, ...] = ()  # few-shot curves when asked: (1, 2, 4, 8, 16, 32, None)
    fewshot_seeds: int = 3
    scratch_cnn: bool = True
    cnn_epochs: int = 6
    threshold_mode: str = "per_genre"

    def check(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise EmbedgenreError(
                f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}."
            )
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad:
            raise BadInputError(
                f"unknown modality(ies) {', '.join(bad)};",
                f"choose from {', '.join(MODALITIES)}.",
                param="modalities",
            )
        if not 0.0 < self.test_size < 1.0:
            raise BadInputError(
                f"The test share must be in (0, 1), got {self.test_size}.", param="test_size"
            )
        if self.fewshot_seeds < 1:
            raise BadInputError(
                f"few-shot seeds must be >= 1, got {self.fewshot_seeds}.", param="fewshot_seeds"
            )
        if self.folds is not None and self.folds < 2:
            raise BadInputError(
                f"The number of folds must be >= 2 (or 0 for one split), got {self.folds}.",
                param="folds",
            )
        if self.cnn_epochs < 1:
            raise BadInputError(
                f"The CNN's epochs must be >= 1, got {self.cnn_epochs}.", param="cnn_epochs"
            )


@dataclass
class Evaluation:
    """``result``: the JSON-able report document; ``labels``: all items' labels (n, g);
    ``test_outputs``: (method, modality, encoder) -> (Y_test, scores) on the "all" subset."""

    result: dict
    labels: np.ndarray
    test_outputs: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )


# ---------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, data: EvalData, config: EvalConfig, progress: Progress | None = None):
        config.check()
        self.data = data
        self.cfg = config
        self.progress = progress
        self.total = 0
        self.Y = np.asarray(data.labels, dtype=np.uint8)
        self.genres = list(data.genres)
        self.outputs: dict[tuple[str, str, str], Output] = {}
        self.skipped: list[dict] = []
        self.timings: dict[str, dict] = {}
        self.late_weights: dict[str, float] = {}
        self.step = 0

    # -- setup ---------------------------------------------------------------------------

    def _chosen(self, modality: str, wanted: tuple[str, ...] | None) -> list:
        views = [v for v in self.data.sets if v.modality == modality]
        if not wanted:
            return views
        names = {v.encoder for v in views}
        bad = [e for e in wanted if e not in names]
        if bad:
            kind = "image" if modality == "poster" else "text"
            raise EmbedgenreError(
                f"{kind} encoder(s) {', '.join(bad)} not in the index; it holds {modality} "
                f"embeddings by: {', '.join(sorted(names)) or 'none'}."
            )
        return [v for v in views if v.encoder in wanted]

    def _select_sets(self) -> None:
        """Poster and plot sets to compare; fusion pairs the index's default of each (or the
        first one chosen, when the default is not)."""
        self.posters = self._chosen("poster", self.cfg.image_encoders)
        self.plots = self._chosen("plot", self.cfg.text_encoders)
        first = lambda views: views[0] if views else None  # noqa: E731
        default = self.data.default_set("poster")
        self.poster0 = default if default in self.posters else first(self.posters)
        default = self.data.default_set("plot")
        self.plot0 = default if default in self.plots else first(self.plots)
        if self.poster0 is None and self.plot0 is None:
            raise EmbedgenreError(
                f"index {self.data.source} holds no poster or plot embeddings to evaluate; build "
                "them with `embedgenre index CATALOG --out DIR`."
            )

    def _universe(self) -> np.ndarray:
        n = len(self.data.ids)
        keep = np.zeros(n, dtype=bool)
        if self.posters:
            keep[:] = True
            for v in self.posters:
                has = np.zeros(n, dtype=bool)
                has[v.rows] = True
                keep &= has
        else:
            keep[self.plot0.rows] = True
        keep &= self.Y.sum(axis=1) > 0
        dropped = n - int(keep.sum())
        if dropped:
            logger.info("%d of %d items lack a poster embedding or genres; left out", dropped, n)
        self.has_plot = np.zeros(n, dtype=bool)
        if self.plot0 is not None:
            self.has_plot[self.plot0.rows] = True
        return np.flatnonzero(keep).astype(np.int64)

    def _split(self, universe: np.ndarray) -> None:
        cfg = self.cfg
        split = make_split(
            self.data.ids,
            self.Y,
            universe,
            document=cfg.split,
            test_size=cfg.test_size,
            seed=cfg.seed,
            folds=cfg.folds,
            val_size=cfg.val_size,
        )
        self.train, self.test, self.val = split.train, split.test, split.val
        self.test_plot = self.test[self.has_plot[self.test]]
        self.split_doc = split.doc

    # -- fitting -------------------------------------------------------------------------

    def _log(self, what: str) -> None:
        self.step += 1
        self.total = max(self.total, self.step)
        logger.info("[%d/%d] %s", self.step, self.total, what)
        if self.progress is not None:
            self.progress(self.step - 1, self.total, what)

    def _planned_steps(self) -> int:
        """How many fits the run will make (few-shot curves count as they come)."""
        cfg, n_methods = self.cfg, len(self.cfg.methods)
        views = [
            v
            for v in self.posters
            if "poster" in cfg.modalities or (v is self.poster0 and "plot" in cfg.modalities)
        ]
        views += self.plots if "plot" in cfg.modalities else []
        steps = n_methods * len(views)
        if self.poster0 is not None and self.plot0 is not None:
            steps += n_methods * len({"early_fusion", "late_fusion"} & set(cfg.modalities))
        if cfg.scratch_cnn and self.posters:
            steps += 2
        return steps

    def _spec(self, method: str, modality: str, fusion: str | None = None) -> HeadSpec:
        """The spec of one row: what ``embedgenre train`` fits with the same options."""
        cfg = self.cfg
        folds = None if self.val is not None else cfg.folds
        return HeadSpec(
            method,
            modality,
            fusion,
            seed=cfg.seed,
            folds=folds,
            val_size=cfg.val_size,
            threshold=cfg.threshold_mode,
        )

    def _fit_eval(self, key, spec: HeadSpec, X_of, train_rows, test_rows, dims=None, prompts=None):
        """``spec.fit`` on ``train_rows`` (labelled, so all of them), then predict ``test_rows``."""
        self._log(" · ".join(key))
        t0 = time.perf_counter()
        validation = None
        if self.val is not None:
            validation = np.flatnonzero(np.isin(train_rows, self.val))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tuned = spec.fit(
                X_of(train_rows),
                self.Y[train_rows],
                self.genres,
                dims=dims,
                prompts=prompts,
                validation=validation,
            )
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        X_test = X_of(test_rows)
        P = np.asarray(tuned.predict_proba(X_test), dtype=np.float64)
        D = np.asarray(tuned.predict(X_test), dtype=np.uint8)
        out = Output(test_rows, P, D, True, fit_s, time.perf_counter() - t1)
        self.outputs[key] = out
        return tuned.estimator_, out

    def _skip(self, method: str, modality: str, encoder: str, reason: str) -> None:
        logger.info("skipping %s · %s · %s: %s", method, modality, encoder, reason)
        self.skipped.append(
            {"method": method, "modality": modality, "encoder": encoder, "reason": reason}
        )

    def _prompts(self, key, views) -> dict | None:
        """{modality: prompt matrix} for zero-shot on ``views``, or None (skipped, with why)."""
        out = {}
        for view in views:
            if not view.has_text_side:
                self._skip(
                    *key,
                    f"{view.encoder} has no text side in its embedding space "
                    "(image-only encoder), so genre prompts cannot be embedded",
                )
                return None
            if self.data.prompts is None:
                self._skip(*key, "no encoder available to embed genre prompts")
                return None
            try:
                out[view.modality] = self.data.prompts(view, self.genres)
            except EmbedgenreError as e:
                self._skip(*key, f"cannot load {view.encoder} to embed prompts: {e}")
                return None
        return out

    def _single(self, view: EmbeddingView) -> None:
        """Every selected method on one embedding set (poster or plot)."""
        rows_ok = np.zeros(len(self.data.ids), dtype=bool)
        rows_ok[view.rows] = True
        train_rows = self.train[rows_ok[self.train]]
        test_rows = self.test[rows_ok[self.test]]
        if len(train_rows) < 10 or len(test_rows) < 1:
            for m in self.cfg.methods:
                self._skip(
                    m,
                    view.modality,
                    view.encoder,
                    f"too few items with {view.modality} embeddings in the split",
                )
            return
        for method in self.cfg.methods:
            key = (method, view.modality, view.encoder)
            prompts = None
            if method == "zeroshot":
                prompts = self._prompts(key, [view])
                if prompts is None:
                    continue
            try:
                self._fit_eval(
                    key,
                    self._spec(method, view.modality),
                    view.matrix,
                    train_rows,
                    test_rows,
                    prompts=prompts,
                )
            except EmbedgenreError as e:
                self._skip(*key, str(e))

    def _fusion(self, fusion: str) -> None:
        """The head ``embedgenre train --modality both --fusion FUSION`` saves, for each method:
        on ``[poster | plot]`` (:func:`embedgenre.features.head_input`), every training item."""
        pv, tv = self.poster0, self.plot0
        enc = f"{pv.encoder}+{tv.encoder}"
        dims = {"poster": pv.vectors.shape[1], "plot": tv.vectors.shape[1]}
        row = f"{fusion}_fusion"

        def X_of(rows: np.ndarray) -> np.ndarray:
            return head_input("both", dims, pv.padded(rows), tv.padded(rows), len(rows))

        for method in self.cfg.methods:
            key = (method, row, enc)
            prompts = None
            if method == "zeroshot":
                if fusion == "early":
                    self._skip(
                        *key,
                        "concatenated poster+plot vectors have no text side to embed prompts; "
                        "see late_fusion for zero-shot fusion",
                    )
                    continue
                prompts = self._prompts(key, [pv, tv])
                if prompts is None:
                    continue
            try:
                model, _ = self._fit_eval(
                    key,
                    self._spec(method, "both", fusion),
                    X_of,
                    self.train,
                    self.test,
                    dims=(dims["poster"], dims["plot"]),
                    prompts=prompts,
                )
            except EmbedgenreError as e:
                self._skip(*key, str(e))
                continue
            if fusion == "late":
                self.late_weights[method] = float(model.weight_)

    def _scratch(self) -> None:
        """The scratch CNN on poster pixels, its thresholds tuned on one validation part (a
        CNN trained once per fold would be slow) and not refitted."""
        key = ("scratch_cnn", "poster", SCRATCH_ENCODER)
        val = self.val
        if val is None:
            val = self.train[
                iterative_split(self.Y[self.train], self.cfg.val_size, self.cfg.seed + 1)[1]
            ]
        rows = np.concatenate([self.train, self.test])
        paths = [self.data.posters[i] for i in rows]
        if not any(paths):
            self._skip(*key, "no poster paths in the index")
            return
        self._log(f"scratch CNN: decoding {len(rows)} posters at 64x96")
        t0 = time.perf_counter()
        pixels, _ = load_poster_pixels(paths)
        n_train = len(self.train)
        self._log(f"scratch CNN: training {self.cfg.cnn_epochs} epochs")
        cnn = ScratchCNN(
            epochs=self.cfg.cnn_epochs,
            seed=self.cfg.seed,
            progress=lambda e, n, loss: logger.info("  epoch %d/%d loss %.4f", e, n, loss),
        )
        tuned = TunedThresholds(cnn, cv=None, refit=False, mode=self.cfg.threshold_mode)
        tuned.fit(
            pixels[:n_train],
            self.Y[self.train],
            classes=self.genres,
            validation=np.flatnonzero(np.isin(self.train, val)),
        )
        fit_s = time.perf_counter() - t0
        X_test = pixels[n_train:]
        P = tuned.predict_proba(X_test)
        self.outputs[key] = Output(self.test, P, tuned.predict(X_test), True, fit_s)

    def _trivial(self) -> None:
        for kind in TRIVIAL_KINDS:
            model = TrivialBaseline(kind).fit(self.train, self.Y[self.train], classes=self.genres)
            P = model.predict_proba(self.test)
            self.outputs[(kind, "labels", "-")] = Output(
                self.test, P, model.predict(self.test), model.has_scores
            )
            if kind == "top_k":
                self.top_k = int(model.k_)

    # -- scoring -------------------------------------------------------------------------

    def _score(self, key, out: Output, subset: str) -> None:
        row, per_genre = score(key, out, self.Y, self.genres, subset)
        self.rows.append(row)
        self.per_genre.extend(per_genre)

    def _score_all(self) -> dict:
        self.rows: list[dict] = []
        self.per_genre: list[dict] = []
        test_outputs = {}
        for key, out in self.outputs.items():
            full = with_fallback(out, self.fallbacks.get(key[0]), self.test)
            if full is not None:
                self._score(key, full, "all")
                if full.has_scores:
                    test_outputs[key] = (self.Y[full.items], full.P)
            else:
                self._skip(
                    key[0],
                    key[1],
                    key[2],
                    "not scored on all test items: no poster fallback for items "
                    "without a plot (scored on the with-plot subset only)",
                )
            if 0 < len(self.test_plot) < len(self.test) and self.plot0 is not None:
                self._score(
                    key,
                    out.take(self.test_plot) if len(out.items) != len(self.test_plot) else out,
                    "with_plot",
                )
            self.timings[" · ".join(key)] = {
                "fit_s": round(out.fit_s, 3),
                "predict_s": round(out.predict_s, 3),
            }
        return test_outputs

    # -- few-shot ------------------------------------------------------------------------

    def _fewshot(self) -> list[dict]:
        """Few-shot curves of the default poster and plot sets (see :mod:`.fewshot`)."""
        rows: list[dict] = []
        for view in (self.poster0, self.plot0):
            if view is None or view.modality not in self.cfg.modalities:
                continue
            rows_ok = np.zeros(len(self.data.ids), dtype=bool)
            rows_ok[view.rows] = True
            test_rows = self.test[rows_ok[self.test]]
            fitted = {}
            for method in self.cfg.methods:
                out = self.outputs.get((method, view.modality, view.encoder))
                if out is not None:
                    fitted[method] = out.take(test_rows)
            rows += fewshot_curve(
                view,
                pool=self.train[rows_ok[self.train]],
                test_rows=test_rows,
                Y=self.Y,
                genres=self.genres,
                methods=self.cfg.methods,
                shots=self.cfg.shots,
                n_seeds=self.cfg.fewshot_seeds,
                spec_of=lambda method, s, m=view.modality: dataclasses.replace(
                    self._spec(method, m), seed=self.cfg.seed + s
                ),
                fitted=fitted,
                log=self._log,
            )
        return rows

    # -- driver --------------------------------------------------------------------------

    def run(self) -> Evaluation:
        """Split, fit every row, score them on the test items, and assemble the report."""
        t_start = time.perf_counter()
        self._select_sets()
        self._split(self._universe())
        self.total = self._planned_steps()
        self._log_split()
        self._fit_all()
        self._keep_reported()
        fewshot = self._fewshot() if self.cfg.shots else []
        test_outputs = self._score_all()
        self.timings["total_s"] = round(time.perf_counter() - t_start, 2)
        if self.progress is not None:
            self.progress(self.step, self.step, "done")
        return Evaluation(result=self._document(fewshot), labels=self.Y, test_outputs=test_outputs)

    def _log_split(self) -> None:
        held = (
            f"{self.cfg.folds}-fold out-of-fold thresholds"
            if self.val is None
            else f"{len(self.val)} of them for validation"
        )
        logger.info(
            "split: %d train (%s), %d test (%d with a plot), seed %d",
            len(self.train),
            held,
            len(self.test),
            len(self.test_plot),
            self.cfg.seed,
        )

    def _fit_all(self) -> None:
        """Fit every row the configuration asks for: baselines, each embedding set alone,
        fusion, the CNN from scratch."""
        modalities = self.cfg.modalities
        self._trivial()
        # the default poster set's rows also score plot rows' items that have no plot
        for view in self.posters:
            if "poster" in modalities or (view is self.poster0 and "plot" in modalities):
                self._single(view)
        if "plot" in modalities:
            for view in self.plots:
                self._single(view)
        if self.poster0 is not None and self.plot0 is not None:
            for fusion in ("early", "late"):
                if f"{fusion}_fusion" in modalities:
                    self._fusion(fusion)
        elif {"early_fusion", "late_fusion"} & set(modalities):
            for mod in ("early_fusion", "late_fusion"):
                self._skip("*", mod, "-", "fusion needs both poster and plot embeddings")
        if self.cfg.scratch_cnn and self.posters:
            self._scratch()

    def _keep_reported(self) -> None:
        """Note each method's default poster output (the fallback of items without a plot),
        then drop the rows fitted only as fallbacks."""
        self.fallbacks = {}  # method -> its default poster set's output
        if self.poster0 is not None:
            for key, out in self.outputs.items():
                if key[1:] == ("poster", self.poster0.encoder):
                    self.fallbacks[key[0]] = out
        for key in list(self.outputs):
            if (
                key[1] in ("poster", "plot")
                and key[1] not in self.cfg.modalities
                and key[0] != ("scratch_cnn")
            ):
                del self.outputs[key]

    def _document(self, fewshot: list[dict]) -> dict:
        """The report document: what was split and fitted, the scored rows, and timings."""
        cfg = self.cfg
        info = {
            "index": self.data.source,
            "n_items": int(len(self.data.ids)),
            "n_genres": len(self.genres),
            "genres": self.genres,
            "n_train": int(len(self.train)),
            "n_val": 0 if self.val is None else int(len(self.val)),
            "folds": None if self.val is not None else cfg.folds,
            "n_test": int(len(self.test)),
            "n_test_with_plot": int(len(self.test_plot)),
            "seed": cfg.seed,
            "top_k": self.top_k,
            "poster_sets": [v.encoder for v in self.posters],
            "plot_sets": [v.encoder for v in self.plots],
            "late_fusion_poster_weight": self.late_weights,
        }
        config = asdict(cfg)
        config["split"] = "file" if cfg.split is not None else "iterative"
        config["shots"] = ["all" if k is None else k for k in cfg.shots]
        return {
            "info": info,
            "config": config,
            "rows": self.rows,
            "per_genre": self.per_genre,
            "skipped": self.skipped,
            "fewshot": fewshot,
            "split": self.split_doc,
            "timings": self.timings,
        }


def evaluate(
    data: EvalData, config: EvalConfig | None = None, progress: Progress | None = None
) -> Evaluation:
    """Run the whole comparison on ``data``; see the module doc for the flow. ``progress`` is
    called as ``progress(done, total, what)`` before each fit and once at the end."""
    return _Run(data, config or EvalConfig(), progress).run()
