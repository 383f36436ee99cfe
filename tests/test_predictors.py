"""Predictors on seeded synthetic embeddings: contracts, references, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from embedgenre import ann
from embedgenre.errors import PredictorError
from embedgenre.heads.files import load_predictor, save_predictor
from embedgenre.predictors import TunedThresholds, fit_thresholds, make_predictor, registry
from embedgenre.predictors.base import GenrePredictor, check_X, check_Y
from embedgenre.predictors.metrics import f1
from embedgenre.predictors.neighbors import MLKNNPredictor, reference_mlknn, search
from embedgenre.predictors.oversample import mlsmote
from embedgenre.predictors.thresholds import apply_thresholds
from embedgenre.predictors.zeroshot import ZeroShotPredictor, prompt_matrix


def tune(pred, X, Y, classes=None, **params) -> TunedThresholds:
    """``pred`` fitted with thresholds tuned out of fold (or as ``params`` say)."""
    return TunedThresholds(pred, **params).fit(X, Y, classes=classes)


def _norm(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n=400, d=24, g=6, seed=0, noise=1.5):
    """Labels Y (n, g) and embeddings X = normalise(Y @ centres + noise)."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < 0.3).astype(np.uint8)
    Y[Y.sum(1) == 0, 0] = 1
    centres = rng.standard_normal((g, d))
    X = _norm(Y @ centres + noise * rng.standard_normal((n, d)))
    return X, Y, centres


@pytest.mark.parametrize("k,s", [(5, 1.0), (10, 0.5)])
def test_mlknn_equals_reference(k, s):
    X, Y, _ = synthetic(n=150, seed=k)
    Q = _norm(X[:40] + 0.2 * np.random.default_rng(1).standard_normal(X[:40].shape))
    fast = MLKNNPredictor(k=k, s=s).fit(X, Y).predict_proba(Q)
    ref = reference_mlknn(X, Y, Q, k, s)
    np.testing.assert_allclose(fast, ref, atol=1e-6)


def test_mlknn_equals_reference_with_more_than_255_positives():
    X, Y, _ = synthetic(n=400, seed=3)
    Y[:300, 1] = 1  # counts beyond uint8 range
    fast = MLKNNPredictor(k=4).fit(X, Y).predict_proba(X[:30])
    np.testing.assert_allclose(fast, reference_mlknn(X, Y, X[:30], 4, 1.0), atol=1e-6)


def test_self_excluded_even_with_duplicates():
    X, _, _ = synthetic(n=30)
    X[5] = X[6]  # exact duplicates tie with each other
    sims, rows = search(ann.flat_index(X), X, 3, exclude_self=True)
    assert rows.shape == (30, 3)
    assert not (rows == np.arange(30)[:, None]).any()
    assert rows[5, 0] == 6 and rows[6, 0] == 5


def test_k_larger_than_index():
    X, Y, _ = synthetic(n=20)
    with pytest.raises(PredictorError, match=r"k=20 is larger than the 19 items this fit holds"):
        MLKNNPredictor(k=20).fit(X, Y)
    with pytest.raises(PredictorError, match=r"k=50 is larger than the 20 items this fit holds"):
        make_predictor("knn", k=50).fit(X, Y)


def test_knn_vote_is_weighted_share():
    X = _norm(np.array([[1, 0], [1, 0.1], [0, 1]], dtype=np.float32))
    Y = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.uint8)
    knn = make_predictor("knn", k=2).fit(X, Y)
    P = knn.predict_proba(_norm(np.array([[1, 0.05]], dtype=np.float32)))
    assert P[0, 0] == pytest.approx(1.0, abs=1e-5)  # both neighbours carry genre 0
    assert 0.4 < P[0, 1] < 0.6  # one of two similar neighbours carries genre 1


@pytest.mark.parametrize("method", ["knn", "mlknn", "linear", "mlp"])
def test_contract_and_learning(method):
    X, Y, _ = synthetic()
    params = {"hidden": 32, "epochs": 40, "patience": 5} if method == "mlp" else {}
    pred = make_predictor(method, **params)
    assert clone(pred).get_params() == pred.get_params()  # __init__ stores params only
    genres = [f"g{i}" for i in range(Y.shape[1])]
    tuned = tune(pred, X, Y, classes=genres)
    assert not hasattr(pred, "classes_")  # the wrapped estimator is cloned, never fitted
    fitted = tuned.estimator_
    assert fitted.classes_ == genres and tuned.classes_ == genres
    P = fitted.predict_proba(X[:50])
    D = fitted.predict(X[:50])
    assert P.shape == D.shape == (50, 6) and D.dtype == np.uint8
    assert ((P >= 0) & (P <= 1)).all()
    np.testing.assert_array_equal(tuned.predict(X[:50]), D)
    np.testing.assert_array_equal(fitted.thresholds_, tuned.thresholds_)
    v = tuned.validation_
    assert v["micro_f1"] > 0.55 and v["map"] > 0.6  # trivial top-2 scores ~0.45 here
    assert v["n_val"] == len(X) and v["folds"] == 5  # every row scored out of fold


def test_fit_errors_are_clear():
    X, Y, _ = synthetic(n=50)
    with pytest.raises(PredictorError, match="Unknown method 'svm'"):
        make_predictor("svm")
    with pytest.raises(PredictorError, match="Unknown parameter.*gamma"):
        make_predictor("linear", gamma=1)
    with pytest.raises(PredictorError, match="class_weight must be None or 'balanced'"):
        make_predictor("linear", class_weight="heavy").fit(X, Y)
    with pytest.raises(PredictorError, match="X has 50 rows but Y has 49"):
        make_predictor("linear").fit(X, Y[:49])
    with pytest.raises(PredictorError, match="reshape"):
        make_predictor("linear").fit(X, Y).predict_proba(X[0])
    with pytest.raises(PredictorError, match="not fitted"):
        make_predictor("mlp").predict(X)
    with pytest.raises(PredictorError, match="Unknown optimizer 'rmsprop'"):
        make_predictor("mlp", optimizer="rmsprop").fit(X, Y)


def test_genre_without_positives_warns_and_is_never_predicted():
    X, Y, _ = synthetic(n=120)
    Y[:, 2] = 0
    for method in ("linear", "mlp", "knn"):
        with pytest.warns(UserWarning, match="No positive training examples for genre.*g2"):
            pred = make_predictor(method, **({"epochs": 3} if method == "mlp" else {}))
            pred.fit(X, Y, classes=[f"g{i}" for i in range(6)])
        assert (pred.predict_proba(X)[:, 2] == 0).all()


def test_mlp_is_deterministic_with_a_seed():
    X, Y, _ = synthetic(n=200)
    kw = dict(hidden=(32, 16), dropout=0.2, epochs=15, patience=3, seed=3)
    a = make_predictor("mlp", **kw).fit(X, Y).predict_proba(X)
    b = make_predictor("mlp", **kw).fit(X, Y).predict_proba(X)
    c = make_predictor("mlp", **{**kw, "seed": 4}).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_mlp_variants_train(optimizer):
    X, Y, _ = synthetic(n=200)
    pred = make_predictor(
        "mlp",
        hidden=16,
        optimizer=optimizer,
        lr=0.01,
        epochs=10,
        pos_weight="sqrt",
        oversample=True,
    ).fit(X, Y)
    assert pred.n_epochs_ >= 1 and pred.predict_proba(X).shape == (200, 6)


def test_mlsmote_adds_normalised_minority_items():
    X, Y, _ = synthetic(n=300)
    Y[:, 5] = 0
    Y[:12, 5] = 1  # a rare genre
    X_new, Y_new = mlsmote(X, Y, k=3, seed=0)
    assert len(X_new) >= 12 and Y_new[:, 5].sum() >= 12
    np.testing.assert_allclose(np.linalg.norm(X_new, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(mlsmote(X, Y, k=3, seed=0)[0], X_new)


def test_thresholds_global_per_genre_and_at_least_one():
    rng = np.random.default_rng(0)
    Y = (rng.random((300, 4)) < 0.3).astype(np.uint8)
    # genre 0 is separable at 0.3, genre 1 at 0.7
    P = np.where(Y, 0.5, 0.1).astype(np.float32)
    P[:, 1] = np.where(Y[:, 1], 0.9, 0.6)
    thr_g, _, score_g = fit_thresholds(P, Y, mode="global")
    thr_p, _, score_p = fit_thresholds(P, Y, mode="per_genre")
    assert np.unique(thr_g).size == 1
    assert score_p == pytest.approx(1.0) and score_p >= score_g
    assert 0.6 < thr_p[1] <= 0.9 and 0.1 < thr_p[0] <= 0.5
    D = apply_thresholds(np.array([[0.1, 0.3, 0.2, 0.0]]), np.full(4, 0.5), at_least_one=True)
    assert D.tolist() == [[0, 1, 0, 0]]
    with pytest.raises(PredictorError, match="Unknown threshold mode 'best'"):
        fit_thresholds(P, Y, mode="best")


class FakeTextEncoder:
    """Embeds a prompt as the centre of the genre word it contains (tests zero-shot wiring)."""

    name = "fake:text"
    modalities = ("image", "text")

    def __init__(self, centres, genres):
        self.centres, self.genres = centres, genres

    def encode_texts(self, texts):
        rows = [next(i for i, g in enumerate(self.genres) if g in t) for t in texts]
        return _norm(self.centres[rows] + 0.01)


def test_zeroshot_without_and_with_labels():
    X, Y, centres = synthetic(n=400, noise=1.0)
    genres = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    enc = FakeTextEncoder(centres, genres)
    W = prompt_matrix(enc, genres, "poster")
    zs = ZeroShotPredictor(prompts=W, modality="poster").fit(X, None, classes=genres)
    assert clone(zs).prompts is not zs.prompts  # plain params: clone copies them
    np.testing.assert_array_equal(clone(zs).prompts, W)
    assert zs.W_.shape == (24, 6)
    np.testing.assert_allclose(np.linalg.norm(zs.W_, axis=0), 1.0, atol=1e-5)
    from embedgenre.predictors.metrics import mean_average_precision

    P = zs.predict_proba(X)
    assert mean_average_precision(Y, P) > 0.6
    assert zs.predict(X).sum(axis=1).min() >= 1  # at least one genre with no labels
    labelled = tune(ZeroShotPredictor(prompts=W), X, Y, classes=genres)
    assert labelled.validation_["micro_f1"] >= f1(Y, zs.predict(X)) - 0.02
    with pytest.raises(PredictorError, match="prompts must be a finite"):
        ZeroShotPredictor(prompts=W[:, :3]).fit(X, None, classes=genres)
    with pytest.raises(PredictorError, match="registry name"):
        ZeroShotPredictor().fit(X, None, classes=genres)


def test_zeroshot_refuses_an_encoder_without_text_side():
    X, _, centres = synthetic(n=20)
    enc = FakeTextEncoder(centres, ["a"] * 6)
    enc.modalities = ("image",)
    enc.name = "cnn:efficientnet-lite0"
    with pytest.raises(
        PredictorError, match=r"no text side|has none.*\(knn, mlknn, linear or mlp\)"
    ):
        prompt_matrix(enc, list("abcdef"), "poster")


@pytest.mark.parametrize("fusion", ["late", "early"])
def test_fusion_and_plot_fallback(fusion):
    X, Y, centres = synthetic(n=400)
    X2, _, _ = synthetic(n=400, d=12, seed=9)
    X2 = _norm(Y @ np.random.default_rng(2).standard_normal((6, 12)) + X2)
    X2[::4] = 0  # a quarter of the items have no plot
    XF = np.hstack([X, X2])
    tuned = tune(make_predictor("linear", fusion=fusion, dims=(24, 12)), XF, Y)
    poster_only = tune(make_predictor("linear"), X, Y)
    assert tuned.validation_["map"] > poster_only.validation_["map"]
    pred = tuned.estimator_
    no_plot = XF[::4]
    np.testing.assert_allclose(
        pred.predict_proba(no_plot), pred.parts_["poster"].predict_proba(no_plot[:, :24]), atol=1e-6
    )
    if fusion == "late":
        assert 0.0 <= pred.weight_ <= 1.0


@pytest.mark.parametrize("method", ["knn", "mlknn", "linear", "mlp", "zeroshot", "late"])
def test_save_load_roundtrip(tmp_path, method):
    X, Y, centres = synthetic(n=150)
    genres = [f"g{i}" for i in range(6)]
    if method == "zeroshot":
        W = prompt_matrix(FakeTextEncoder(centres, genres), genres, "poster")
        pred = ZeroShotPredictor(prompts=W, encoder="fake:text").fit(X, Y, classes=genres)
    elif method == "late":
        pred = make_predictor("mlp", fusion="late", dims=(12, 12), hidden=8, epochs=3).fit(X, Y)
    else:
        pred = make_predictor(method, **({"epochs": 3} if method == "mlp" else {})).fit(X, Y)
    pred.set_thresholds(np.linspace(0.2, 0.7, 6), at_least_one=False)
    save_predictor(pred, tmp_path / "head", extra={"name": "h"})
    doc = json.loads((tmp_path / "head" / "head.json").read_text())
    assert doc["name"] == "h" and doc["predictor"]["at_least_one"] is False
    with np.load(tmp_path / "head" / "arrays.npz", allow_pickle=False) as npz:
        assert npz.files  # plain arrays, loadable without pickle
    loaded, _ = load_predictor(tmp_path / "head")
    np.testing.assert_allclose(loaded.predict_proba(X), pred.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X), pred.predict(X))
    assert loaded.classes_ == pred.classes_


class CentroidPredictor(GenrePredictor):
    """An estimator that only this test knows: it declares its saved state and nothing else."""

    method = "centroid"
    saved_arrays = {"centres": ("g", "d")}

    def __init__(self, classes=None):
        self.classes = classes

    def fit(self, X, Y, classes=None, X_val=None, Y_val=None):
        X, Y = check_X(X), check_Y(Y, len(X))
        self._init_fitted(Y, classes)
        self.centres_ = ((Y.T @ X) / np.maximum(Y.sum(axis=0), 1)[:, None]).astype(np.float32)
        return self

    def predict_proba(self, X):
        return (1 / (1 + np.exp(-check_X(X, self.n_features_in_) @ self.centres_.T))).astype(
            np.float32
        )

    @property
    def n_features_in_(self):
        return self.centres_.shape[1]

    def _state(self):
        return {}, {"centres": self.centres_}

    def _load_state(self, meta, arrays):
        self.centres_ = arrays["centres"].astype(np.float32)


def test_a_new_estimator_saves_and_loads_by_its_own_declarations(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._CLASSES, "centroid", CentroidPredictor)
    X, Y, _ = synthetic(n=60)
    pred = CentroidPredictor().fit(X, Y)
    save_predictor(pred, tmp_path / "head")
    loaded, _ = load_predictor(tmp_path / "head")
    assert isinstance(loaded, CentroidPredictor)
    np.testing.assert_array_equal(loaded.predict_proba(X), pred.predict_proba(X))
    np.savez(tmp_path / "head" / "arrays.npz", centres=pred.centres_[:5])
    with pytest.raises(PredictorError, match=r"'centres' has shape \(5, 24\), expected \(6, d\)"):
        load_predictor(tmp_path / "head")


def test_load_missing_head(tmp_path):
    with pytest.raises(PredictorError, match="No saved head"):
        load_predictor(tmp_path / "nothing")


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "samples_f1"])
def test_fast_f1_equals_sklearn(metric):
    from embedgenre.predictors.metrics import f1_fast

    rng = np.random.default_rng(7)
    for _ in range(20):
        Y = (rng.random((60, 7)) < 0.2).astype(np.uint8)
        pred = (rng.random((60, 7)) < 0.25).astype(np.uint8)
        Y[:, 3] = 0  # a genre with no positives
        pred[:5] = 0  # rows with no prediction
        assert f1_fast(Y, pred, metric) == pytest.approx(f1(Y, pred, metric), abs=1e-12)


def test_rare_genres_keep_the_global_threshold():
    rng = np.random.default_rng(1)
    Y = (rng.random((300, 3)) < 0.3).astype(np.uint8)
    Y[:, 2] = 0
    Y[:5, 2] = 1  # 5 positives: below the minimum support for a threshold of its own
    P = np.where(Y, 0.6, 0.2).astype(np.float32)
    P[:, 2] = np.where(Y[:, 2], 0.9, 0.8)  # separable only at a genre-specific threshold
    thr, _, _ = fit_thresholds(P, Y, mode="per_genre")
    assert thr[2] == thr[1]  # the global value
    thr_all, _, _ = fit_thresholds(P, Y, mode="per_genre", min_support=1)
    assert 0.8 < thr_all[2] <= 0.9


def test_tuned_thresholds_refit_on_all_rows_keeping_what_validation_chose():
    X, Y, _ = synthetic(n=300)
    once = tune(make_predictor("linear"), X, Y, cv=None, refit=False)
    again = tune(make_predictor("linear"), X, Y, cv=None)
    full = make_predictor("linear").fit(X, Y)
    np.testing.assert_allclose(again.estimator_.coef_, full.coef_, atol=1e-6)
    assert not np.allclose(once.estimator_.coef_, full.coef_, atol=1e-3)
    np.testing.assert_array_equal(again.thresholds_, once.thresholds_)
    assert again.validation_ == once.validation_
    user = make_predictor("mlp", hidden=16, epochs=30, patience=3)
    mlp = tune(user, X, Y, cv=None)
    assert user.epochs == 30 and user.patience == 3  # the user's params are kept
    chosen = mlp.chosen_["epochs"]
    assert mlp.estimator_.n_epochs_ == chosen <= 30  # the refit ran the chosen epoch count
    assert mlp.estimator_.patience == 0 and mlp.chosen_["patience"] == 0
    late = make_predictor("linear", fusion="late", dims=(12, 12))
    tuned = tune(late, X, Y, cv=None)
    assert late.weight is None and tuned.estimator_.weight == tuned.chosen_["weight"]
    assert 0.0 <= tuned.estimator_.weight_ <= 1.0


def test_tuned_thresholds_fix_the_mlp_parts_of_a_fused_head():
    X, Y, _ = synthetic(n=240)
    fused = make_predictor("mlp", fusion="early", dims=(12, 12), hidden=8, epochs=40, patience=2)
    tuned = tune(fused, X, Y, cv=3)
    parts = tuned.estimator_.parts_
    for which, key in (("poster", "poster_params"), ("plot", "plot_params"), ("joint", "params")):
        epochs = tuned.chosen_[key]["epochs"]
        assert 1 <= epochs <= 40 and parts[which].n_epochs_ == epochs
        assert parts[which].hidden == 8  # the shared params still apply


def test_out_of_fold_thresholds_score_rows_with_models_that_did_not_see_them():
    X, Y, _ = synthetic(n=200, seed=4)
    rng = np.random.default_rng(0)
    noise_Y = (rng.random(Y.shape) < 0.3).astype(np.uint8)  # labels unrelated to X
    # 1-NN recalls every training row perfectly, so a leak would show as validation F1 = 1
    leaky = make_predictor("knn", k=1).fit(X, noise_Y)
    assert f1(noise_Y, (leaky.predict_proba(X) > 0.5).astype(np.uint8)) == 1.0
    held_out = tune(make_predictor("knn", k=1), X, noise_Y, cv=4)
    v = held_out.validation_
    assert v["n_val"] == len(X) and v["folds"] == 4 and v["micro_f1"] < 0.6
    # the final model is fitted on every row
    assert len(held_out.estimator_.X_) == len(X)

    mlp = make_predictor("mlp", hidden=64, epochs=300, patience=3, lr=0.03)
    tuned = tune(mlp, X, Y, cv=3)
    assert mlp.epochs == 300 and mlp.patience == 3  # the user's params are kept
    assert 1 <= tuned.estimator_.n_epochs_ < 300  # the folds' median epoch count, no stopping
    with pytest.raises(PredictorError, match="folds must be between 2 and half"):
        tune(make_predictor("linear"), X[:10], Y[:10], cv=6)


def test_iterative_folds_cover_every_row_once():
    from embedgenre.splits import iterative_folds

    _, Y, _ = synthetic(n=101)
    folds = iterative_folds(Y, 5, seed=0)
    held = np.concatenate([b for _, b in folds])
    assert sorted(held.tolist()) == list(range(101))
    for a, b in folds:
        assert not np.intersect1d(a, b).size and len(a) + len(b) == 101
    assert all((x[1] == y[1]).all() for x, y in zip(folds, iterative_folds(Y, 5, seed=0)))


def test_late_weight_follows_the_informative_modality():
    from embedgenre.predictors.fusion import choose_late_weight

    rng = np.random.default_rng(0)
    Y = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    good = np.clip(Y + 0.3 * rng.standard_normal(Y.shape), 0, 1)
    noise = rng.random(Y.shape)
    assert choose_late_weight(good, noise, Y) >= 0.8
    assert choose_late_weight(noise, good, Y) <= 0.2
    X, Yx, _ = synthetic(n=240)
    late = make_predictor("linear", fusion="late", dims=(12, 12))
    tuned = tune(late, X, Yx, cv=3)
    rows, P = tuned.heldout_
    assert len(rows) == len(X) and P.shape == Yx.shape and late.weight is None
    w = tuned.estimator_.weight_
    assert 0.0 <= w <= 1.0 and tuned.validation_["folds"] == 3 and tuned.chosen_["weight"] == w


def test_trivial_baselines_and_the_scratch_cnn_follow_the_predictor_contract():
    from embedgenre.predictors.baselines import TrivialBaseline
    from embedgenre.predictors.scratch_cnn import ScratchCNN

    _, Y, _ = synthetic(n=40)
    for kind in ("none", "most_frequent", "top_k", "all", "prior"):
        model = clone(TrivialBaseline(kind)).fit(np.zeros(len(Y)), Y, classes=list("abcdef"))
        D = model.predict(np.zeros(5))
        assert (D == model.row_).all() and model.classes_ == list("abcdef")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (40, 3, 32, 16), dtype=np.uint8)
    pixels[Y[:, 0] == 1, 0] = 250  # genre 0 is a red poster
    tuned = TunedThresholds(ScratchCNN(epochs=2, width=4), cv=None, refit=False)
    tuned.fit(pixels, Y, validation=np.arange(30, 40))
    assert tuned.estimator_.thresholds_.shape == (6,) and tuned.validation_["n_val"] == 10
    assert tuned.predict(pixels[:3]).shape == (3, 6)


def test_a_catalog_fitted_encoder_has_no_dimension_until_fitted():
    from embedgenre.encoders.base import CatalogFittedEncoder
    from embedgenre.encoders.registry import fitted_class
    from embedgenre.errors import EmbedgenreError

    cls = fitted_class("hybrid:all-MiniLM-L6-v2")
    assert issubclass(cls, CatalogFittedEncoder) and fitted_class("cnn:efficientnet-lite0") is None
    enc = cls.__new__(cls)
    enc.name, enc.backend, enc._dim = "hybrid:x", "onnx", None
    with pytest.raises(EmbedgenreError, match="not fitted yet"):
        _ = enc.dim
    assert "unfitted" in repr(enc)


def test_a_neighbour_count_over_the_fit_names_the_counts_it_met():
    from embedgenre.predictors.spec import HeadSpec

    X, Y, _ = synthetic(n=50)
    genres = [f"g{j}" for j in range(Y.shape[1])]
    spec = HeadSpec("knn", "poster", params={"k": 5000}, folds=5)
    with pytest.raises(PredictorError) as e:
        spec.fit(X, Y, genres)
    msg = str(e.value)
    assert "50 labelled items with poster embeddings, of which each fit sees 40" in msg
    assert "one of 5 folds held out" in msg and "k <= 40" in msg and e.value.param == "k"
    spec = HeadSpec("mlknn", "poster", params={"k": 40}, folds=None, val_size=0.2)
    with pytest.raises(PredictorError, match=r"each fit sees 40 \(10 held out.*k <= 39"):
        spec.fit(X, Y, genres)
    HeadSpec("knn", "poster", params={"k": 30}, folds=5).fit(X, Y, genres)
