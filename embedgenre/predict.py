"""The Predictor service: an index, its heads and their query encoders loaded once, answering
"which genres?" for posters and plots. The CLI's ``predict`` and the HTTP service call it.

    predictor = Predictor.open("indexes/posters")
    result = predictor.predict(posters=["poster.jpg"], plot="A family moves into a haunted house.")
    result.results[0].genres        # ['Horror', 'Drama']

Heads and encoders are chosen per kind of input (posters, a plot, or both) the first time that
kind is asked for and kept, so repeated calls pay only for encoding and scoring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from embedgenre.catalog import plot_text
from embedgenre.encoders import load_set_encoder
from embedgenre.errors import NoSuchPosterError, PosterError, PredictorError
from embedgenre.features import head_input
from embedgenre.heads import Head, HeadCache, choose_head, load_head
from embedgenre.images import check_poster_file, decode_image_bytes
from embedgenre.predictors.thresholds import apply_thresholds
from embedgenre.store import GenreIndex

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- answers


@dataclass
class GenreScore:
    genre: str
    score: float
    threshold: float
    predicted: bool


@dataclass
class Supporter:
    """A labelled movie near the query that carries a predicted genre (an explanation)."""

    id: str
    title: str | None
    year: int | None
    score: float  # cosine similarity to the query, in [-1, 1]


@dataclass
class Prediction:
    """One input's answer: the predicted genres (best first) and the ranking they come from;
    with ``explain``, per predicted genre the nearest labelled movies that carry it."""

    input: str
    genres: list[str]
    ranking: list[GenreScore]
    neighbours: dict[str, list[Supporter]] | None = None


@dataclass
class PredictResult:
    """What :meth:`Predictor.predict` answers.

    ``head``: name, method, modality, fusion, encoders, validation scores, saved.
    ``results``: one :class:`Prediction` per poster (or one for a plot alone).
    ``timings``: seconds per step (load, encode, score, explain); not part of the document.
    ``notes``: what the caller gave that was not used.
    """

    head: dict
    results: list[Prediction]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The one JSON document of a prediction: what ``embedgenre predict --json`` prints
        and ``POST /v1/predict`` answers (``neighbours`` only when explanations were asked)."""
        results = []
        for r in self.results:
            doc = asdict(r)
            if r.neighbours is None:
                del doc["neighbours"]
            results.append(doc)
        doc = {"head": dict(self.head), "results": results}
        if self.notes:
            doc["notes"] = list(self.notes)
        return doc


class Predictor:
    """Genres from posters and plots with the heads saved in one index.

    ``head``: the name of a saved head to use for every query (None: for each kind of input,
    the best saved head that fits it, else zero-shot where the index allows it).
    ``encoder_loader``: embedding set -> its query encoder (default ``load_set_encoder``); a
    long-running service passes one that shares encoders between index generations.
    ``save_zeroshot``: save the zero-shot head fitted when no saved head fits, so the next
    query loads it (``embedgenre predict`` does; a read-only service does not).
    ``heads``: heads kept across index generations (a service following new generations passes
    one, so a new generation never reads an unchanged head again or fits one).
    """

    def __init__(
        self,
        index: GenreIndex,
        head: str | None = None,
        encoder_loader: Callable | None = None,
        save_zeroshot: bool = False,
        heads: HeadCache | None = None,
    ):
        self.index = index
        self.head_name = head
        self.encoder_loader = encoder_loader or load_set_encoder
        self.save_zeroshot = save_zeroshot
        self.heads = heads
        self._loaded: dict[tuple[bool, bool], QueryEncoders] = {}

    @classmethod
    def open(cls, index_dir: str | Path, head: str | None = None) -> Predictor:
        return cls(GenreIndex.open(index_dir), head=head)

    def query_encoders(self, has_poster: bool, has_plot: bool) -> QueryEncoders:
        """The head (and its encoders) for this kind of input, loaded on first use."""
        key = (has_poster, has_plot)
        if key not in self._loaded:
            head = choose_head(
                self.index, has_poster, has_plot, self.head_name, self.save_zeroshot, self.heads
            )
            self._loaded[key] = load_query_encoders(self.index, head, self.encoder_loader)
        return self._loaded[key]

    def predict(
        self,
        posters: list[str | Path | Image.Image | bytes] | None = None,
        plot: str | None = None,
        title: str | None = None,
        top: int | None = None,
        explain: bool = False,
        names: list[str] | None = None,
    ) -> PredictResult:
        """Genres of each poster (with ``plot`` beside each, when given), or of the plot alone.

        Parameters
        ----------
        posters : list of str, Path, PIL.Image.Image or bytes, optional
            Poster files, images already in memory, or the bytes of an image file.
        plot : str, optional
            A synopsis.
        title : str, optional
            The movie's title; it goes with ``plot`` (the index embeds a title with its
            synopsis).
        top : int, optional
            How many genre scores each answer ranks (every predicted genre is listed anyway).
        explain : bool
            Add, per predicted genre, the nearest labelled movies that carry it
            (``Prediction.neighbours``).
        names : list of str, optional
            How the answers name the posters (default: the file path, else "image N" or
            "poster N").

        Returns
        -------
        PredictResult
            The head used, and per poster (or for the plot alone) the predicted genres and the
            ranking of scores against thresholds; ``notes`` says what was given but not used.
        """
        if title is not None and plot is None:
            raise PredictorError(
                "A title goes with a plot (the index embeds a title with its synopsis).",
                "Add the plot or drop the title.",
                param="title",
            )
        plot = check_plot(plot)
        images, labels = query_posters(posters)
        if names is not None:
            if len(names) != len(images):
                raise PredictorError(
                    f"{len(names)} names given for {len(images)} posters.",
                    "Give one name per poster.",
                    param="names",
                )
            labels = [str(n) for n in names]
        if not images and plot is None:
            raise PredictorError(
                "No poster and no plot given.", "Give a poster, a plot or both.", param="posters"
            )
        t0 = time.perf_counter()
        q = self.query_encoders(bool(images), plot is not None)
        t1 = time.perf_counter()
        notes = []
        if plot is not None and images and q.plot is None:
            notes.append(f"head {q.head.name} scores posters only: the plot was not used.")
        if q.head.unscored:
            notes.append(unscored_note(q.head.name, q.head.unscored))
        pv, tv = encode_inputs(q, images, plot, title)
        t2 = time.perf_counter()
        rows = score_inputs(q.head, pv, tv, labels or ["(plot)"], top)
        t3 = time.perf_counter()
        results = [
            Prediction(r["input"], r["genres"], [GenreScore(**g) for g in r["ranking"]])
            for r in rows
        ]
        if explain:
            for i, r in enumerate(results):
                found = voting_neighbours(
                    self.index,
                    q.head,
                    None if pv is None else pv[i],
                    None if tv is None else tv[i],
                    r.genres,
                )
                r.neighbours = {g: [Supporter(**n) for n in ns] for g, ns in found.items()}
        t4 = time.perf_counter()
        timings = {"load": t1 - t0, "encode": t2 - t1, "score": t3 - t2}
        if explain:
            timings["explain"] = t4 - t3
        return PredictResult(
            q.head.describe(), results, {k: round(v, 4) for k, v in timings.items()}, notes
        )

    def catalog_encoders(self, catalog) -> QueryEncoders:
        """The head for every item of ``catalog``: the named head (each item scored on the
        inputs it uses), else the best saved head for what the catalog's items hold."""
        if self.head_name:
            key = ("catalog", self.head_name)
            if key not in self._loaded:
                load = self.heads.load if self.heads is not None else load_head
                head = load(self.index, self.head_name)
                self._loaded[key] = load_query_encoders(self.index, head, self.encoder_loader)
            return self._loaded[key]
        has_poster = any(it.poster is not None for it in catalog.items)
        return self.query_encoders(has_poster, any(it.plot for it in catalog.items))

    def predict_catalog(self, catalog, batch_size: int = 64, top: int | None = None):
        """(head description, one dict per item: id, genres, scores, error) for a catalog."""
        q = self.catalog_encoders(catalog)
        return q.head.describe(), list(predict_catalog(q, catalog, batch_size=batch_size, top=top))


# ------------------------------------------------------------------------------- the steps


@dataclass
class QueryEncoders:
    """Encoders loaded for a head's embedding sets (kept for repeated calls)."""

    head: Head
    poster: object | None = None
    plot: object | None = None


def load_query_encoders(index, head: Head, loader: Callable | None = None) -> QueryEncoders:
    q = QueryEncoders(head)
    for modality, enc in head.encoders.items():
        setattr(q, modality, (loader or load_set_encoder)(index.get_set(modality, enc["encoder"])))
    return q


def inputs_for_head(
    head: Head, poster_vecs: np.ndarray | None, plot_vecs: np.ndarray | None, n: int
):
    """The (n, d) input of ``head`` from per-item poster / plot vectors (None = missing)."""
    dims = {m: e["dim"] for m, e in head.encoders.items()}
    try:
        return head_input(head.modality, dims, poster_vecs, plot_vecs, n)
    except PredictorError:
        raise PredictorError(f"Head {head.name!r} needs a {head.modality} input.") from None


def query_posters(posters) -> tuple[list, list[str]]:
    """(what the encoder reads, a label per poster) for posters given as file paths, PIL
    images or encoded bytes. Files are checked before any model loads, so a wrong path is
    reported at once."""
    images, labels = [], []
    for i, p in enumerate(posters or []):
        if isinstance(p, Image.Image):
            images.append(p)
            labels.append(f"image {i + 1}")
        elif isinstance(p, (bytes, bytearray, memoryview)):
            images.append(decode_image_bytes(bytes(p), name=f"poster {i + 1}"))
            labels.append(f"poster {i + 1}")
        else:
            path = Path(p)
            if not path.exists():
                raise NoSuchPosterError(
                    f"poster {path}: no such file;", "check the path.", param="posters"
                )
            check_poster_file(path)
            images.append(str(path))
            labels.append(str(path))
    return images, labels


def unscored_note(head_name: str, genres: list[str]) -> str:
    """What to tell a caller whose head was trained before some genres of the index existed."""
    return (
        f"head {head_name} was trained before {len(genres)} genre(s) of the index existed and "
        f"cannot score them: {', '.join(genres)}; train it again to score them."
    )


def check_plot(plot: str | None) -> str | None:
    if plot is None:
        return None
    if not plot.strip():
        raise PredictorError(
            "The plot text is empty.", "Give a synopsis or leave the plot out.", param="plot"
        )
    return plot.strip()


def ranked_genres(head: Head, P: np.ndarray, top: int | None = None) -> list[list[dict]]:
    """Per row: genres best first as {genre, score, threshold, predicted} (top ``top`` if given)."""
    pred = head.predictor
    D = apply_thresholds(P, pred.thresholds_, pred.at_least_one_)
    out = []
    for p, d in zip(P, D):
        order = np.argsort(-p, kind="stable")[: top or len(p)]
        out.append(
            [
                {
                    "genre": head.genres[j],
                    "score": float(p[j]),  # exact: reports recompute metrics from it
                    "threshold": round(float(pred.thresholds_[j]), 4),
                    "predicted": bool(d[j]),
                }
                for j in order
            ]
        )
    return out


def predicted_genres(head: Head, P: np.ndarray) -> list[list[str]]:
    """Per row: every genre that passes its threshold (with the at-least-one rule), best first.
    How many scores a caller shows (``top``) never changes which genres are predicted."""
    pred = head.predictor
    D = apply_thresholds(P, pred.thresholds_, pred.at_least_one_)
    out = []
    for p, d in zip(P, D):
        chosen = np.flatnonzero(d)
        out.append([head.genres[j] for j in chosen[np.argsort(-p[chosen], kind="stable")]])
    return out


def encode_inputs(
    q: QueryEncoders, posters: list | None = None, plot: str | None = None, title: str | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The query vectors a head needs: posters (paths or PIL images) -> (n, d) or None, the plot
    (with ``title``) -> (n, d) repeated beside each poster (one row alone), or None."""
    head = q.head
    plot = check_plot(plot)
    posters = list(posters or [])
    if not posters and plot is None:
        raise PredictorError(
            "No poster and no plot given.", "Give a poster, a plot or both.", param="posters"
        )
    n = max(1, len(posters))
    pv = tv = None
    if posters:
        if q.poster is None:
            raise PredictorError(
                f"Head {head.name!r} uses no poster embeddings.",
                "Give a plot only, or choose a head that reads posters.",
                param="posters",
            )
        pv = q.poster.encode_images(posters)
    if plot is not None and q.plot is not None:
        tv = np.repeat(q.plot.encode_texts([plot_text(plot, title)]), n, axis=0)
    elif plot is not None and not posters:
        raise PredictorError(
            f"Head {head.name!r} uses no plot embeddings.",
            "Give a poster, or choose a head that reads plots.",
            param="plot",
        )
    return pv, tv


def score_inputs(
    head: Head,
    pv: np.ndarray | None,
    tv: np.ndarray | None,
    labels: list[str],
    top: int | None = None,
) -> list[dict]:
    """One dict per row of the query vectors (``labels`` name the rows): input, genres, ranking."""
    P = head.predictor.predict_proba(inputs_for_head(head, pv, tv, len(labels)))
    ranking, genres = ranked_genres(head, P, top), predicted_genres(head, P)
    return [
        {"input": lab, "genres": g, "ranking": rk} for lab, g, rk in zip(labels, genres, ranking)
    ]


def _encode_posters(encoder, paths: list) -> tuple[np.ndarray, list[str | None]]:
    """Encode a batch; if one poster is bad, encode one by one and report each failure."""
    try:
        return encoder.encode_images(paths), [None] * len(paths)
    except PosterError:
        vecs = np.zeros((len(paths), encoder.dim), dtype=np.float32)
        errors: list[str | None] = [None] * len(paths)
        for i, p in enumerate(paths):
            try:
                vecs[i] = encoder.encode_images([p])[0]
            except PosterError as e:
                errors[i] = str(e)
        return vecs, errors


def predict_catalog(q: QueryEncoders, catalog, batch_size: int = 64, top: int | None = 5):
    """Predict every item of a catalog in batches. Yields one dict per item: id, genres
    (predicted, best first), scores ({genre: score} of the ``top`` best), error (or None)."""
    head = q.head
    items = list(catalog.items)
    use_poster, use_plot = q.poster is not None, q.plot is not None
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        n = len(batch)
        pv = np.zeros((n, q.poster.dim), np.float32) if use_poster else None
        tv = np.zeros((n, q.plot.dim), np.float32) if use_plot else None
        has = np.zeros(n, dtype=bool)
        errors: list[str | None] = [None] * n
        if use_poster:
            idx = [i for i, it in enumerate(batch) if it.poster is not None]
            if idx:
                vecs, errs = _encode_posters(q.poster, [batch[i].poster for i in idx])
                for i, v, e in zip(idx, vecs, errs):
                    if e is None:
                        pv[i], has[i] = v, True
                    else:
                        errors[i] = e
        if use_plot:
            idx = [i for i, it in enumerate(batch) if it.plot_text]
            if idx:
                tv[idx] = q.plot.encode_texts([batch[i].plot_text for i in idx])
                if head.modality != "poster":
                    has[idx] = True
        if head.modality == "plot":
            has = np.array([it.plot_text is not None for it in batch])
        if head.modality == "poster" and pv is None:
            has[:] = False
        ok = np.flatnonzero(has)
        P = np.zeros((n, len(head.genres)), np.float32)
        if len(ok):
            X = inputs_for_head(
                head, None if pv is None else pv[ok], None if tv is None else tv[ok], len(ok)
            )
            P[ok] = head.predictor.predict_proba(X)
        ranking, genres = ranked_genres(head, P, top), predicted_genres(head, P)
        for i, it in enumerate(batch):
            if not has[i]:
                need = {"poster": "a readable poster", "plot": "a plot"}.get(
                    head.modality, "a readable poster or a plot"
                )
                yield {
                    "id": it.id,
                    "genres": [],
                    "scores": {},
                    "error": errors[i] or f"no input: head {head.name} needs {need}",
                }
                continue
            yield {
                "id": it.id,
                "genres": genres[i],
                "scores": {r["genre"]: r["score"] for r in ranking[i]},
                "error": None,
            }


def voting_neighbours(
    index: GenreIndex,
    head: Head,
    pv: np.ndarray | None,
    tv: np.ndarray | None,
    genres: list[str],
    k: int = 10,
    per_genre: int = 3,
) -> dict[str, list[dict]]:
    """Why each genre: the ``per_genre`` nearest labelled items (of the ``k`` nearest to the
    query's poster vector ``pv`` (d,), else its plot vector ``tv``) that carry that genre.

    For a kNN head these are the neighbours whose votes scored the genre; for other heads, the
    labelled examples closest to the query that support it. {genre: [{id, title, year, score}]}.
    """
    modality, vec = ("poster", pv) if pv is not None else ("plot", tv)
    if vec is None or modality not in head.encoders or not genres:
        return {}
    emb = index.get_set(modality, head.encoders[modality]["encoder"])
    if not len(emb.rows):
        return {}
    scores, rows = emb.search(np.asarray(vec, dtype=np.float32)[None, :], min(k, len(emb.rows)))
    col = {g: j for j, g in enumerate(index.genres)}
    labels = index.labels
    out: dict[str, list[dict]] = {}
    for g in genres:
        j = col.get(g)
        found = []
        for score, row in zip(scores[0], rows[0]):
            if row < 0 or j is None or not labels[row, j]:
                continue
            item = index.items[row]
            found.append(
                {
                    "id": item["id"],
                    "title": item.get("title"),
                    "year": item.get("year"),
                    "score": round(float(score), 4),
                }
            )
            if len(found) == per_genre:
                break
        out[g] = found
    return out
