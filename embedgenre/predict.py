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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embedgenre.errors import PredictorError
from embedgenre.predictors import heads as H
from embedgenre.store import GenreIndex

logger = logging.getLogger(__name__)


@dataclass
class GenreScore:
    genre: str
    score: float
    threshold: float
    predicted: bool


@dataclass
class Prediction:
    """One input's answer: the predicted genres (best first) and the ranking they come from."""

    input: str
    genres: list[str]
    ranking: list[GenreScore]


@dataclass
class PredictResult:
    head: dict  # name, method, modality, fusion, encoders, validation scores, saved
    results: list[Prediction]
    timings: dict[str, float] = field(default_factory=dict)  # seconds: choose, encode+score

    def to_dict(self) -> dict:
        """The JSON shape of ``embedgenre predict --json``."""
        return {"head": self.head, "results": [asdict(r) for r in self.results]}


class Predictor:
    """Genres from posters and plots with the heads saved in one index.

    ``head``: the name of a saved head to use for every query (None: for each kind of input,
    the best saved head that fits it, else zero-shot where the index allows it).
    """

    def __init__(self, index: GenreIndex, head: str | None = None):
        self.index = index
        self.head_name = head
        self._loaded: dict[tuple[bool, bool], H.QueryEncoders] = {}

    @classmethod
    def open(cls, index_dir: str | Path, head: str | None = None) -> Predictor:
        return cls(GenreIndex.open(index_dir), head=head)

    def query_encoders(self, has_poster: bool, has_plot: bool) -> H.QueryEncoders:
        """The head (and its encoders) for this kind of input, loaded on first use."""
        key = (has_poster, has_plot)
        if key not in self._loaded:
            head = H.choose_head(self.index, has_poster, has_plot, name=self.head_name)
            self._loaded[key] = H.load_query_encoders(self.index, head)
        return self._loaded[key]

    def predict(
        self,
        posters: list[str | Path] | None = None,
        plot: str | None = None,
        title: str | None = None,
        top: int | None = None,
    ) -> PredictResult:
        """Genres of each poster (with ``plot`` beside each, when given), or of the plot alone.

        ``title`` goes with ``plot``: the index embeds a movie's title with its synopsis.
        """
        if title is not None and plot is None:
            raise PredictorError(
                "--title goes with --plot (the index embeds a title with its synopsis); "
                'add --plot "..." or drop --title.'
            )
        plot = H.check_plot(plot)
        posters = [str(p) for p in posters or []]
        if not posters and plot is None:
            raise PredictorError("Give at least one poster file or --plot TEXT (or --catalog).")
        t0 = time.perf_counter()
        q = self.query_encoders(bool(posters), plot is not None)
        t1 = time.perf_counter()
        rows = H.predict_inputs(q, posters, plot, top=top, title=title)
        t2 = time.perf_counter()
        results = [
            Prediction(r["input"], r["genres"], [GenreScore(**g) for g in r["ranking"]])
            for r in rows
        ]
        return PredictResult(
            q.head.describe(), results, {"load": round(t1 - t0, 4), "predict": round(t2 - t1, 4)}
        )
