"""Hybrid text encoders: the lexical (TF-IDF -> LSA) half, its fit stored in the index, and
queries embedded with the same fit."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from _catalogs import make_catalog
from _fakes import Factory, build

from embedgenre.catalog import plot_text
from embedgenre.encoders.base import Encoder
from embedgenre.encoders.hybrid import STATE_DIR, HybridEncoder, LexicalLSA, _counter, _tfidf
from embedgenre.errors import EmbedgenreError, IndexStoreError
from embedgenre.store import GenreIndex


def _fixture_plots(fixture_dir) -> list[str]:
    with open(fixture_dir / "movies.csv", encoding="utf-8") as f:
        return [r["plot"] for r in csv.DictReader(f) if r["plot"]]


class FakeSentence(Encoder):
    """A text-only Encoder (real base class) that needs no model: 8-d vectors from a hash."""

    family = "fake"
    modalities = ("text",)

    def __init__(self) -> None:
        self.name = self.space = "fake:s"
        self.dim = 8
        self.texts_seen = 0

    def _forward_texts(self, texts):
        self.texts_seen += len(texts)
        seeds = [int.from_bytes(t.encode()[:8].ljust(8, b"\0"), "little") ^ len(t) for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(8) for s in seeds])


class HybridFactory(Factory):
    """Fake posters and plain sets as in test_index; ``hybrid:fake`` is a real HybridEncoder
    around a FakeSentence."""

    def __call__(self, name):
        if name.startswith("hybrid:"):
            enc = HybridEncoder(name, FakeSentence())
            self.made[name] = enc
            return enc
        return super().__call__(name)


def test_lexical_half_is_the_scikit_learn_tfidf_then_svd(fixture_dir):
    """Our transform (kept as plain arrays) equals TfidfVectorizer + the SVD it was fitted with."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    plots = _fixture_plots(fixture_dir)
    lsa = LexicalLSA.fit(plots, dim=32)
    ref = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, stop_words="english")
    X_ref = ref.fit_transform(plots)
    assert lsa.terms == ref.get_feature_names_out().tolist()
    np.testing.assert_allclose(lsa.idf, ref.idf_, rtol=1e-6)
    X = _tfidf(_counter({t: i for i, t in enumerate(lsa.terms)}).transform(plots), lsa.idf)
    np.testing.assert_allclose(X.toarray(), X_ref.toarray(), atol=1e-6)
    Z = np.asarray(X_ref @ lsa.components.T)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    np.testing.assert_allclose(lsa.transform(plots), Z, atol=1e-5)
    assert lsa.dim == 32 and lsa.transform(["zzzz qqqq"]).any() == False  # noqa: E712


def test_lexical_fit_round_trips_and_detects_damage(fixture_dir, tmp_path):
    plots = _fixture_plots(fixture_dir)
    lsa = LexicalLSA.fit(plots)
    assert lsa.dim == len(plots) - 1  # never more components than plots allow
    lsa.save(tmp_path / "lsa")
    back = LexicalLSA.load(tmp_path / "lsa")
    assert back.fingerprint() == lsa.fingerprint()
    np.testing.assert_array_equal(back.transform(plots[:5]), lsa.transform(plots[:5]))
    # a fit is deterministic: the same plots give the same fingerprint
    assert LexicalLSA.fit(plots).fingerprint() == lsa.fingerprint()

    comp = np.load(tmp_path / "lsa" / "components.npy")
    np.save(tmp_path / "lsa" / "components.npy", comp * 1.01)
    with pytest.raises(EmbedgenreError, match="damaged"):
        LexicalLSA.load(tmp_path / "lsa")
    (tmp_path / "lsa" / "terms.json").unlink()
    with pytest.raises(EmbedgenreError, match="damaged"):
        LexicalLSA.load(tmp_path / "lsa")


def test_too_few_plots_and_an_unfitted_encoder_give_clear_errors():
    with pytest.raises(EmbedgenreError, match="at least 3"):
        LexicalLSA.fit(["one plot", "two plots"])
    with pytest.raises(EmbedgenreError, match="st:"):
        LexicalLSA.fit(["alpha beta", "gamma delta", "epsilon zeta"])  # no term in two plots
    enc = HybridEncoder("hybrid:fake", FakeSentence())
    with pytest.raises(EmbedgenreError, match="fit"):
        enc.encode_texts(["a plot"])


def test_hybrid_vector_is_both_halves(fixture_dir):
    plots = _fixture_plots(fixture_dir)
    enc = HybridEncoder("hybrid:fake", FakeSentence()).fit(plots)
    v = enc.encode_texts(plots[:4])
    assert v.shape == (4, 8 + enc.lsa.dim) and enc.dim == v.shape[1]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        v[:, :8] * np.sqrt(2), FakeSentence().encode_texts(plots[:4]), atol=1e-5
    )
    np.testing.assert_allclose(v[:, 8:] * np.sqrt(2), enc.lsa.transform(plots[:4]), atol=1e-5)
    assert enc.space == f"hybrid:fake#{enc.lsa.fingerprint()}"


def test_index_stores_the_fit_and_adding_items_keeps_it(small_catalog, tmp_path):
    root, rows = small_catalog
    out = tmp_path / "idx"
    make_catalog(root, rows[:16])
    factory = HybridFactory()
    build(root, out, factory, text_encoders=["hybrid:fake"])
    s1 = GenreIndex.open(out).get_set("plot")
    assert (s1.directory / STATE_DIR / "lsa.json").is_file()
    first = factory.made["hybrid:fake"]
    assert s1.space == first.space and first.lsa.documents == 16
    # queries embedded through the stored fit land exactly on the stored vectors
    query = HybridEncoder("hybrid:fake", FakeSentence()).load_state(s1.directory)
    items = GenreIndex.open(out).items
    texts = [plot_text(items[r]["plot"], items[r]["title"]) for r in s1.rows[:3]]
    assert query.space == s1.space
    np.testing.assert_allclose(query.encode_texts(texts), s1.vectors[:3], atol=1e-6)
    old_vectors = np.array(s1.vectors)

    make_catalog(root, rows)  # four more movies
    factory = HybridFactory()
    summary = build(root, out, factory, add=True)
    plot = next(s for s in summary.sets if s.modality == "plot")
    assert (plot.reused, plot.encoded) == (16, 4)
    s2 = GenreIndex.open(out).get_set("plot")
    assert s2.space == s1.space  # the old fit, not a refit on 20 plots
    assert factory.made["hybrid:fake"].lsa.documents == 16
    np.testing.assert_array_equal(np.asarray(s2.vectors)[:16], old_vectors)
    assert (s2.directory / STATE_DIR / "lsa.json").is_file()

    # every plot rewritten: nothing is kept, so the set gets a new fit (and no refusal)
    make_catalog(root, [{**r, "plot": r["plot"] + " Told backwards."} for r in rows])
    summary = build(root, out, HybridFactory())
    plot = next(s for s in summary.sets if s.modality == "plot")
    assert (plot.reused, plot.encoded) == (0, 20)
    s3 = GenreIndex.open(out).get_set("plot")
    assert s3.space != s1.space and len(s3.rows) == 20


class Interrupt(Exception):
    pass


def test_killed_hybrid_run_resumes_with_the_same_fit(small_catalog, tmp_path):
    root, rows = small_catalog
    out = tmp_path / "idx"

    class Dies(HybridFactory):
        def __call__(self, name):
            enc = super().__call__(name)
            if name.startswith("hybrid:"):
                real = enc.sentence._forward_texts

                def forward(texts):
                    if enc.sentence.texts_seen >= 12:  # after the first group of 8
                        raise Interrupt
                    return real(texts)

                enc.sentence._forward_texts = forward
            return enc

    dying = Dies()
    with pytest.raises(Interrupt):
        build(root, out, dying, text_encoders=["hybrid:fake"], chunk_size=4, batch_size=1)
    partial = out / ".partial" / "plot__hybrid-fake"
    assert (partial / STATE_DIR / "lsa.json").is_file() and list(partial.glob("chunk-*.npz"))
    fit = dying.made["hybrid:fake"].space

    factory = HybridFactory()
    summary = build(root, out, factory, text_encoders=["hybrid:fake"])
    plot = next(s for s in summary.sets if s.modality == "plot")
    assert plot.resumed >= 8 and plot.resumed + plot.encoded == 20
    assert GenreIndex.open(out).get_set("plot").space == fit

    # chunks whose fit went missing cannot be matched to any fit: a clear error, nothing lost
    shutil.rmtree(out)
    with pytest.raises(Interrupt):
        build(root, out, Dies(), text_encoders=["hybrid:fake"], chunk_size=4, batch_size=1)
    shutil.rmtree(partial / STATE_DIR)
    with pytest.raises(IndexStoreError, match="without the fit"):
        build(root, out, HybridFactory(), text_encoders=["hybrid:fake"])


def test_hybrid_encoder_embeds_like_plain_minilm_on_its_dense_half(fixture_dir):
    """The real thing: hybrid:all-MiniLM-L6-v2 = [MiniLM | LSA] / sqrt(2)."""
    from embedgenre.encoders import create_encoder, encoder_spec

    assert encoder_spec("hybrid:all-MiniLM-L6-v2").available
    plots = _fixture_plots(fixture_dir)
    enc = create_encoder("hybrid:all-MiniLM-L6-v2").fit(plots)
    st = create_encoder("st:all-MiniLM-L6-v2")
    v = enc.encode_texts(plots[:3])
    np.testing.assert_allclose(v[:, :384] * np.sqrt(2), st.encode_texts(plots[:3]), atol=1e-4)
    assert enc.describe()["text"]["lsa"]["documents"] == len(plots)


def test_fake_encoder_still_builds_plain_sets(small_catalog, tmp_path):
    """Sets of encoders that are not fitted on the catalog carry no lexical fit."""
    root, _ = small_catalog
    build(root, tmp_path / "idx", Factory())
    s = GenreIndex.open(tmp_path / "idx").get_set("plot")
    assert not (s.directory / STATE_DIR).exists()


def test_default_plot_encoder_depends_on_how_many_plots_there_are(small_catalog, tmp_path):
    """A new index with no text encoder named: hybrid with enough plots, plain MiniLM below
    MIN_PLOTS (the lexical half needs plots to learn words from)."""
    from embedgenre.encoders.hybrid import MIN_PLOTS

    root, rows = small_catalog
    assert len(rows) >= MIN_PLOTS
    build(root, tmp_path / "many", HybridFactory(), text_encoders=None)
    assert GenreIndex.open(tmp_path / "many").get_set("plot").encoder == "hybrid:all-MiniLM-L6-v2"

    make_catalog(root, [{**r, "plot": r["plot"] if i < 2 else ""} for i, r in enumerate(rows)])
    build(root, tmp_path / "few", HybridFactory(), text_encoders=None)
    assert GenreIndex.open(tmp_path / "few").get_set("plot").encoder == "st:all-MiniLM-L6-v2"
