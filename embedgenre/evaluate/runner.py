"""Run every method x modality x embedding set on one split and score it.

The flow: :class:`~embedgenre.evaluate.data.EvalData` -> split (:mod:`.split`) -> for each
embedding set and method: :func:`~embedgenre.predictors.fit_with_validation` on the training
part, exactly as ``embedgenre train`` does (thresholds on out-of-fold predictions, then a fit on
every training item), predict test -> fusion (early: a head on concatenated vectors; late: the
poster and plot heads' probabilities averaged with a weight chosen on their held-out
predictions) -> scratch CNN on pixels -> trivial baselines -> metrics on the "all" and
"with_plot" test subsets (:mod:`.scoring`) -> few-shot refits (:mod:`.fewshot`).

On the "all" subset, plot and fusion predictions of items without a plot come from the same
method on the default poster set, so every row scores the same test items.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from embedgenre.errors import EmbedgenreError
from embedgenre.evaluate.baselines import TRIVIAL_KINDS, TrivialBaseline
from embedgenre.evaluate.data import EmbeddingView, EvalData
from embedgenre.evaluate.fewshot import fewshot_curve
from embedgenre.evaluate.methods import METHODS, evaluation_predictor
from embedgenre.evaluate.scoring import Output, score, with_fallback
from embedgenre.evaluate.split import make_split
from embedgenre.features import head_input

logger = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("poster", "plot", "early_fusion", "late_fusion")
SCRATCH_ENCODER = "pixels:64x96"
LATE_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2).tolist())


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
    shots: tuple[int | None, ...] = (1, 2, 4, 8, 16, 32, None)
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
            raise EmbedgenreError(
                f"unknown modality(ies) {', '.join(bad)}; choose from {', '.join(MODALITIES)}."
            )
        if not 0.0 < self.test_size < 1.0:
            raise EmbedgenreError(f"--test-size must be in (0, 1), got {self.test_size}.")
        if self.fewshot_seeds < 1:
            raise EmbedgenreError(f"few-shot seeds must be >= 1, got {self.fewshot_seeds}.")
        if self.folds is not None and self.folds < 2:
            raise EmbedgenreError(f"--folds must be >= 2 (or 0 for one split), got {self.folds}.")
        if self.cnn_epochs < 1:
            raise EmbedgenreError(f"--cnn-epochs must be >= 1, got {self.cnn_epochs}.")


def _late_heldout(w: float, ra, Pa, rb, Pb) -> tuple[np.ndarray, np.ndarray]:
    """Late-fusion held-out scores over the union of the poster rows ``ra`` and plot rows ``rb``:
    ``w * Pa + (1 - w) * Pb`` where an item has both, else the one it has."""
    oa, ob = np.argsort(ra), np.argsort(rb)
    ra, Pa, rb, Pb = ra[oa], Pa[oa], rb[ob], Pb[ob]
    rows = np.union1d(ra, rb)
    P = np.zeros((len(rows), Pa.shape[1]), dtype=np.float32)
    in_a, in_b = np.isin(rows, ra), np.isin(rows, rb)
    P[in_a] = Pa[np.searchsorted(ra, rows[in_a])]
    P[in_b] = Pb[np.searchsorted(rb, rows[in_b])]
    both = in_a & in_b
    P[both] = (
        w * Pa[np.searchsorted(ra, rows[both])] + (1 - w) * Pb[np.searchsorted(rb, rows[both])]
    )
    return rows, P


@dataclass
class Evaluation:
    """``result``: the JSON-able report document; ``labels``: all items' labels (n, g);
    ``test_outputs``: (method, modality, encoder) -> (Y_test, scores) on the "all" subset."""

    result: dict
    labels: np.ndarray
    test_outputs: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )


# ---------------------------------------------------------------------------- predictors


def _import_predictors() -> None:
    import embedgenre.predictors  # noqa: F401  (fail early, before any work, if missing)


# ---------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, data: EvalData, config: EvalConfig):
        config.check()
        self.data = data
        self.cfg = config
        self.Y = np.asarray(data.labels, dtype=np.uint8)
        self.genres = list(data.genres)
        self.outputs: dict[tuple[str, str, str], Output] = {}
        self.skipped: list[dict] = []
        self.timings: dict[str, dict] = {}
        # (method, modality, encoder) -> held-out (item rows, probabilities) of its training
        self._heldout: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}
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
        logger.info("[%d] %s", self.step, what)

    def _fit_eval(self, key, make, X_of, train_rows, test_rows):
        """``fit_with_validation(make(), ...)`` on ``train_rows``, then predict ``test_rows``."""
        from embedgenre.predictors import fit_with_validation

        self._log(" · ".join(key))
        t0 = time.perf_counter()
        model = make()
        if self.val is not None:
            held = {"validation": np.flatnonzero(np.isin(train_rows, self.val))}
        else:
            held = {"folds": min(self.cfg.folds, len(train_rows) // 2)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fit_with_validation(
                model,
                X_of(train_rows),
                self.Y[train_rows],
                classes=self.genres,
                val_size=self.cfg.val_size,
                seed=self.cfg.seed,
                threshold=self.cfg.threshold_mode,
                **held,
            )
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        X_test = X_of(test_rows)
        P = np.asarray(model.predict_proba(X_test), dtype=np.float64)
        D = np.asarray(model.predict(X_test), dtype=np.uint8)
        out = Output(test_rows, P, D, True, fit_s, time.perf_counter() - t1)
        self.outputs[key] = out
        if key[1] in ("poster", "plot"):
            rows, P_held = model.heldout_
            self._heldout[key] = (train_rows[rows], np.asarray(P_held, dtype=np.float64))
        return model, out

    def _skip(self, method: str, modality: str, encoder: str, reason: str) -> None:
        logger.info("skipping %s · %s · %s: %s", method, modality, encoder, reason)
        self.skipped.append(
            {"method": method, "modality": modality, "encoder": encoder, "reason": reason}
        )

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
            encoder = None
            if method == "zeroshot":
                if not view.has_text_side:
                    self._skip(
                        *key,
                        f"{view.encoder} has no text side in its embedding space "
                        "(image-only encoder), so genre prompts cannot be embedded",
                    )
                    continue
                if self.data.load_encoder is None:
                    self._skip(*key, "no encoder available to embed genre prompts")
                    continue
                try:
                    encoder = self.data.load_encoder(view)
                except EmbedgenreError as e:
                    self._skip(*key, f"cannot load {view.encoder} to embed prompts: {e}")
                    continue
            try:
                self._fit_eval(
                    key,
                    lambda m=method, e=encoder, n=len(train_rows): evaluation_predictor(
                        m, n, self.cfg.seed, self.genres, e, view.modality
                    ),
                    view.matrix,
                    train_rows,
                    test_rows,
                )
            except EmbedgenreError as e:
                self._skip(*key, str(e))

    def _early_fusion(self) -> None:
        """The early-fusion head ``embedgenre train --modality both --fusion early`` saves: a
        head on ``[poster | plot]`` (:func:`embedgenre.features.head_input`) for items with
        both, the single heads for items with one, fitted on every training item."""
        pv, tv = self.poster0, self.plot0
        enc = f"{pv.encoder}+{tv.encoder}"
        dims = {"poster": pv.vectors.shape[1], "plot": tv.vectors.shape[1]}

        def X_of(rows: np.ndarray) -> np.ndarray:
            return head_input("both", dims, pv.padded(rows), tv.padded(rows), len(rows))

        train_rows = self.train
        for method in self.cfg.methods:
            if method == "zeroshot":
                self._skip(
                    method,
                    "early_fusion",
                    enc,
                    "concatenated poster+plot vectors have "
                    "no text side to embed prompts; see late_fusion for zero-shot fusion",
                )
                continue
            try:
                self._fit_eval(
                    (method, "early_fusion", enc),
                    lambda m=method, n=len(train_rows): evaluation_predictor(
                        m,
                        n,
                        self.cfg.seed,
                        self.genres,
                        fusion="early",
                        dims=(dims["poster"], dims["plot"]),
                    ),
                    X_of,
                    train_rows,
                    self.test_plot,
                )
            except EmbedgenreError as e:
                self._skip(method, "early_fusion", enc, str(e))

    def _late_fusion(self) -> None:
        """``w * p_poster + (1 - w) * p_plot`` of the poster and plot heads already fitted, as
        ``embedgenre train --fusion late`` makes it: ``w`` is chosen on their held-out
        predictions of the training items that have both; the thresholds on the held-out
        predictions of every training item, each with what it has (the fused scores, or the
        poster's or the plot's alone)."""
        from embedgenre.predictors.fusion import choose_late_weight
        from embedgenre.predictors.thresholds import apply_thresholds, fit_thresholds

        pv, tv = self.poster0, self.plot0
        enc = f"{pv.encoder}+{tv.encoder}"
        for method in self.cfg.methods:
            ka, kb = (method, "poster", pv.encoder), (method, "plot", tv.encoder)
            a, b = self.outputs.get(ka), self.outputs.get(kb)
            common = None
            if a is not None and b is not None:
                (ra, Pa), (rb, Pb) = self._heldout[ka], self._heldout[kb]
                common, ia, ib = np.intersect1d(ra, rb, return_indices=True)
            if common is None or not len(common):
                self._skip(
                    method,
                    "late_fusion",
                    enc,
                    "needs the method on both the default poster and plot sets",
                )
                continue
            self._log(f"{method} · late_fusion · {enc}")
            w = choose_late_weight(Pa[ia], Pb[ib], self.Y[common])
            rows, P_held = _late_heldout(w, ra, Pa, rb, Pb)
            thr, rule, _ = fit_thresholds(P_held, self.Y[rows], mode=self.cfg.threshold_mode)
            a_t, b_t = a.take(self.test_plot), b.take(self.test_plot)
            P = w * a_t.P + (1 - w) * b_t.P
            self.late_weights[method] = float(w)
            D = apply_thresholds(P, thr, rule)
            self.outputs[(method, "late_fusion", enc)] = Output(
                self.test_plot, P, np.asarray(D, np.uint8), True, a.fit_s + b.fit_s, 0.0
            )

    def _scratch(self) -> None:
        from embedgenre.evaluate.scratch_cnn import ScratchCNN, load_poster_pixels
        from embedgenre.splits import iterative_split

        key = ("scratch_cnn", "poster", SCRATCH_ENCODER)
        val = self.val
        if val is None:  # one validation part for the thresholds: training a CNN K times is slow
            val = self.train[
                iterative_split(self.Y[self.train], self.cfg.val_size, self.cfg.seed + 1)[1]
            ]
        fit_rows = np.setdiff1d(self.train, val)
        rows = np.concatenate([fit_rows, val, self.test])
        paths = [self.data.posters[i] for i in rows]
        if not any(paths):
            self._skip(*key, "no poster paths in the index")
            return
        self._log(f"scratch CNN: decoding {len(rows)} posters at 64x96")
        t0 = time.perf_counter()
        pixels, ok = load_poster_pixels(paths)
        at = {int(r): i for i, r in enumerate(rows)}

        def X_of(r: np.ndarray) -> np.ndarray:
            return pixels[[at[int(i)] for i in r]]

        self._log(f"scratch CNN: training {self.cfg.cnn_epochs} epochs on {len(fit_rows)} posters")
        model = ScratchCNN(epochs=self.cfg.cnn_epochs, seed=self.cfg.seed, classes=self.genres)
        model.fit(
            X_of(fit_rows),
            self.Y[fit_rows],
            progress=lambda e, n, loss: logger.info("  epoch %d/%d loss %.4f", e, n, loss),
        )
        from embedgenre.predictors.thresholds import apply_thresholds, fit_thresholds

        thr, rule, _ = fit_thresholds(
            model.predict_proba(X_of(val)), self.Y[val], mode=self.cfg.threshold_mode
        )
        fit_s = time.perf_counter() - t0
        P = model.predict_proba(X_of(self.test))
        self.outputs[key] = Output(self.test, P, apply_thresholds(P, thr, rule), True, fit_s)

    def _trivial(self) -> None:
        for kind in TRIVIAL_KINDS:
            model = TrivialBaseline(kind, classes=self.genres).fit(None, self.Y[self.train])
            P = model.predict_proba(self.test)
            self.outputs[(kind, "labels", "-")] = Output(
                self.test, P, model.predict(self.test), model.has_scores
            )
        self.top_k = int(TrivialBaseline("top_k").fit(None, self.Y[self.train]).k_)

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
            fallback = None
            if self.poster0 is not None:
                fallback = self.outputs.get((key[0], "poster", self.poster0.encoder))
            full = with_fallback(out, fallback, self.test)
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
                    fitted[method] = out.take(test_rows).P
            rows += fewshot_curve(
                view,
                pool=self.train[rows_ok[self.train]],
                test_rows=test_rows,
                Y=self.Y,
                genres=self.genres,
                methods=self.cfg.methods,
                shots=self.cfg.shots,
                n_seeds=self.cfg.fewshot_seeds,
                seed=self.cfg.seed,
                r=self.top_k,
                fitted=fitted,
                log=self._log,
            )
        return rows

    # -- driver --------------------------------------------------------------------------

    def run(self) -> Evaluation:
        t_start = time.perf_counter()
        _import_predictors()
        cfg = self.cfg
        self._select_sets()
        universe = self._universe()
        self._split(universe)
        held = (
            f"{cfg.folds}-fold out-of-fold thresholds"
            if self.val is None
            else f"{len(self.val)} of them for validation"
        )
        logger.info(
            "split: %d train (%s), %d test (%d with a plot), seed %d",
            len(self.train),
            held,
            len(self.test),
            len(self.test_plot),
            cfg.seed,
        )
        self._trivial()
        if (
            "poster" in cfg.modalities
            or "early_fusion" in cfg.modalities
            or ("late_fusion" in cfg.modalities)
        ):
            for view in self.posters:
                if view is self.poster0 or "poster" in cfg.modalities:
                    self._single(view)
        if self.plot0 is not None and {"plot", "late_fusion"} & set(cfg.modalities):
            for view in self.plots:
                if view is self.plot0 or "plot" in cfg.modalities:
                    self._single(view)
        if self.poster0 is not None and self.plot0 is not None:
            if "early_fusion" in cfg.modalities:
                self._early_fusion()
            if "late_fusion" in cfg.modalities:
                self._late_fusion()
        elif {"early_fusion", "late_fusion"} & set(cfg.modalities):
            for mod in ("early_fusion", "late_fusion"):
                self._skip("*", mod, "-", "fusion needs both poster and plot embeddings")
        if cfg.scratch_cnn and self.posters:
            self._scratch()
        # rows asked for only as inputs of fusion are not reported
        for key in list(self.outputs):
            if (
                key[1] in ("poster", "plot")
                and key[1] not in cfg.modalities
                and key[0] != ("scratch_cnn")
            ):
                del self.outputs[key]
        fewshot = self._fewshot() if cfg.shots else []
        test_outputs = self._score_all()
        self.timings["total_s"] = round(time.perf_counter() - t_start, 2)
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
        result = {
            "info": info,
            "config": config,
            "rows": self.rows,
            "per_genre": self.per_genre,
            "skipped": self.skipped,
            "fewshot": fewshot,
            "split": self.split_doc,
            "timings": self.timings,
        }
        return Evaluation(result=result, labels=self.Y, test_outputs=test_outputs)


def evaluate(data: EvalData, config: EvalConfig | None = None) -> Evaluation:
    """Run the whole comparison on ``data``; see the module doc for the flow."""
    return _Run(data, config or EvalConfig()).run()
