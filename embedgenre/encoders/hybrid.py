"""Hybrid text encoders: ``hybrid:<sentence model>``, e.g. ``hybrid:all-MiniLM-L6-v2``.

A plot is embedded as ``[sentence vector | LSA vector] / sqrt(2)``, both halves unit length:

- the sentence-transformers vector (``st:<sentence model>``) carries what the plot is about;
- the LSA vector carries which words it uses: TF-IDF over words and word pairs (sublinear term
  frequency, English stop words dropped, terms in at least two plots), projected on its top
  singular vectors (latent semantic analysis) and L2-normalised. Genre words such as "sheriff",
  "zombie" or "documentary" weigh more here than in a small sentence encoder.

The LSA half is fitted on text, without labels. ``embedgenre index`` fits it on the catalog's plots
and stores it inside the embedding set (``lsa/``: JSON + ``.npy``, no pickles);
``GenreIndex.load_encoder`` loads it back, so queries are embedded exactly as the catalog was.
Adding items later keeps the stored fit. The fit's fingerprint is part of the encoder's space:
vectors of two different fits are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre.encoders.base import CatalogFittedEncoder, Encoder, l2_normalize
from embedgenre.encoders.registry import EncoderSpec, Family, create_encoder, encoder_spec, register
from embedgenre.errors import EmbedgenreError
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

LSA_DIM = 512
MIN_PLOTS = 20  # below this, `index` picks plain st: by default (too few plots to learn words from)
NGRAMS = (1, 2)
MIN_DF = 2
STATE_DIR = "lsa"


def _counter(vocabulary=None):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        ngram_range=NGRAMS,
        min_df=1 if vocabulary is not None else MIN_DF,
        stop_words="english",
        vocabulary=vocabulary,
        dtype=np.float32,
    )


def _tfidf(counts, idf: np.ndarray):
    """Counts (csr) -> sublinear TF-IDF rows of unit length (zero rows stay zero)."""
    from sklearn.preprocessing import normalize

    x = counts.tocsr().astype(np.float32)
    np.log(x.data, out=x.data)
    x.data += 1.0
    x.data *= idf.astype(np.float32)[x.indices]
    return normalize(x, norm="l2", copy=False)


class LexicalLSA:
    """TF-IDF -> truncated SVD, fitted on texts; saved and loaded as plain arrays."""

    def __init__(self, terms: list[str], idf: np.ndarray, components: np.ndarray, documents: int):
        self.terms = terms
        self.idf = np.asarray(idf, dtype=np.float32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)  # (k, terms)
        self._projection = np.ascontiguousarray(self.components.T)  # (terms, k): fast x @ P
        self.documents = int(documents)
        self._count = _counter({t: i for i, t in enumerate(terms)})

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, texts: list[str], dim: int = LSA_DIM, seed: int = 0) -> LexicalLSA:
        from sklearn.decomposition import TruncatedSVD

        texts = [t for t in texts if t and t.strip()]
        if len(texts) < 3:
            raise EmbedgenreError(
                f"the lexical half of a hybrid encoder is fitted on the catalog's plots and needs "
                f"at least 3, got {len(texts)}; use a sentence encoder (st:...) for this catalog"
            )
        count = _counter()
        try:
            counts = count.fit_transform(texts)
        except ValueError as e:  # no term occurs in two plots
            raise EmbedgenreError(
                f"cannot fit the lexical half of a hybrid encoder on these {len(texts)} plots "
                f"({e}); use a sentence encoder (st:...) for this catalog"
            ) from e
        terms = count.get_feature_names_out().tolist()
        df = np.bincount(counts.indices, minlength=len(terms)).astype(np.float64)
        idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0  # smoothed, as scikit-learn does
        x = _tfidf(counts, idf)
        k = max(1, min(dim, len(texts) - 1, len(terms) - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=seed)
        svd.fit(x)
        return cls(terms, idf, svd.components_, len(texts))

    def transform(self, texts: list[str]) -> np.ndarray:
        """float32 (n, dim), unit rows (a text with no known term gives a zero row)."""
        x = _tfidf(self._count.transform(texts), self.idf)
        return l2_normalize(np.asarray(x @ self._projection))

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update("\n".join(self.terms).encode())
        h.update(self.idf.tobytes())
        h.update(self.components.tobytes())
        return h.hexdigest()[:12]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        atomic.save_npy(directory / "idf.npy", self.idf)
        atomic.save_npy(directory / "components.npy", self.components)
        atomic.write_json(directory / "terms.json", self.terms)
        meta = {
            "dim": self.dim,
            "documents": self.documents,
            "ngram_range": list(NGRAMS),
            "min_df": MIN_DF,
            "stop_words": "english",
            "sublinear_tf": True,
            "fingerprint": self.fingerprint(),
        }
        atomic.write_json(directory / "lsa.json", meta)  # written last: marks a complete fit

    @classmethod
    def load(cls, directory: Path) -> LexicalLSA:
        try:
            meta = json.loads((directory / "lsa.json").read_text())
            terms = json.loads((directory / "terms.json").read_text())
            idf = np.load(directory / "idf.npy", allow_pickle=False)
            components = np.load(directory / "components.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EmbedgenreError(
                f"cannot read the fitted lexical encoder in {directory} ({e}); the index is "
                "damaged: rebuild the plot set with `embedgenre index CATALOG --out INDEX`"
            ) from e
        lsa = cls(terms, idf, components, meta["documents"])
        if lsa.fingerprint() != meta["fingerprint"]:
            raise EmbedgenreError(
                f"the fitted lexical encoder in {directory} does not match its fingerprint; "
                "the index is damaged: rebuild it with `embedgenre index CATALOG --out INDEX`"
            )
        return lsa


class HybridEncoder(CatalogFittedEncoder):
    """A sentence encoder and an LSA fitted on the catalog, as one unit-length vector."""

    family = "hybrid"
    modalities = ("text",)
    state_dir = STATE_DIR
    state_marker = "lsa.json"

    def __init__(self, name: str, sentence: Encoder) -> None:
        self.name = name
        self.sentence = sentence
        self.lsa: LexicalLSA | None = None
        self.device = sentence.device
        self.backend = sentence.backend
        self.weights_source = sentence.weights_source
        self.weights_path = sentence.weights_path
        self._versions = sentence._versions + ("scikit-learn",)
        self.space = name
        self._dim = None

    # -- the fitted half -------------------------------------------------------------------
    def _use(self, lsa: LexicalLSA) -> None:
        self.lsa = lsa
        self._dim = self.sentence.dim + lsa.dim
        self.space = f"{self.name}#{lsa.fingerprint()}"

    def fit(self, texts: list[str]) -> HybridEncoder:
        """Fit the lexical half on ``texts`` (a catalog's plots)."""
        self._use(LexicalLSA.fit(list(texts)))
        logger.info(
            "%s: lexical half fitted on %d plots (%d terms, %d dims)",
            self.name,
            self.lsa.documents,
            len(self.lsa.terms),
            self.lsa.dim,
        )
        return self

    def save_state(self, directory: Path) -> None:
        if self.lsa is None:
            raise EmbedgenreError(f"encoder '{self.name}' is not fitted; nothing to save")
        self.lsa.save(Path(directory) / STATE_DIR)

    def load_state(self, directory: Path) -> HybridEncoder:
        self._use(LexicalLSA.load(Path(directory) / STATE_DIR))
        return self

    # -- encoding --------------------------------------------------------------------------
    def _forward_texts(self, texts: list[str]) -> np.ndarray:
        if self.lsa is None:
            raise EmbedgenreError(
                f"encoder '{self.name}' has a lexical half fitted on a catalog: embed texts "
                "through an index (`embedgenre.encoders.load_set_encoder`), or fit it first with "
                "`encoder.fit(plots)`"
            )
        dense = self.sentence.encode_texts(texts, batch_size=max(1, len(texts)))
        lexical = self.lsa.transform(texts)
        return np.hstack([dense, lexical]) / np.sqrt(2.0)

    def _text_description(self) -> dict[str, Any]:
        desc = {"sentence": self.sentence.describe(), "normalized": True}
        if self.lsa is not None:
            desc["lsa"] = {
                "dim": self.lsa.dim,
                "terms": len(self.lsa.terms),
                "documents": self.lsa.documents,
                "fingerprint": self.lsa.fingerprint(),
            }
        return desc


@register
class HybridFamily(Family):
    prefix = "hybrid"
    fitted_class = HybridEncoder
    description = "a sentence encoder plus a TF-IDF/LSA half fitted on the catalog's plots"
    example = "hybrid:all-MiniLM-L6-v2"

    def known_names(self) -> list[str]:
        return ["hybrid:all-MiniLM-L6-v2"]

    def _sentence_name(self, name: str) -> str:
        return "st:" + name.split(":", 1)[1]

    def spec(self, name: str) -> EncoderSpec:
        st = encoder_spec(self._sentence_name(name))
        return EncoderSpec(
            name=name,
            family="hybrid",
            modalities=("text",),
            dim=None,  # the lexical half's size depends on the catalog it is fitted on
            available=st.available,
            source=st.source,
            location=st.location,
            description="sentence encoder + TF-IDF/LSA fitted on the catalog's plots",
        )

    def create(self, name: str, device: str, backend: str, **options: Any) -> Encoder:
        sentence = create_encoder(
            self._sentence_name(name), device=device, backend=backend, **options
        )
        return HybridEncoder(name, sentence)

    def check_import(self, name: str, path: Path, config: Path | None) -> dict[str, Path | bytes]:
        raise EmbedgenreError(
            f"'{name}' has no weights of its own: import the sentence model as "
            f"{self._sentence_name(name)} instead"
        )
