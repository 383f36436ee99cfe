"""The main jobs as plain functions: index a catalog, train a head, predict, find similar movies,
search, evaluate. Each is a few lines over the library calls the CLI and the service make, so a
notebook gets the same results as ``embedgenre ...`` on the command line.

    import embedgenre

    embedgenre.index("movies/", "indexes/movies")
    embedgenre.train("indexes/movies", method="linear", modality="poster")
    predictor = embedgenre.Predictor.open("indexes/movies")
    print(predictor.predict(posters=["poster.jpg"]).results[0].genres)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from embedgenre.catalog import Catalog, read_catalog
from embedgenre.evaluate.api import evaluate_index as _evaluate_index
from embedgenre.evaluate.runner import EvalConfig, Evaluation
from embedgenre.heads import Head, train_head
from embedgenre.indexing import IndexSummary, build_index
from embedgenre.predictors import HeadSpec
from embedgenre.predictors.tuning import DEFAULT_FOLDS
from embedgenre.retrieval import RetrievalResult, Retriever
from embedgenre.store import GenreIndex

IndexLike = str | Path | GenreIndex


def open_index(path: IndexLike) -> GenreIndex:
    """The index directory at ``path``, opened for reading.

    Parameters
    ----------
    path : str, Path or GenreIndex
        An index directory made by :func:`index` (an open index is returned as it is).

    Returns
    -------
    GenreIndex
        Its items (``.items``), genres (``.genres``), labels and embedding sets.
    """
    return path if isinstance(path, GenreIndex) else GenreIndex.open(path)


def index(
    catalog: str | Path | Catalog,
    out: str | Path,
    *,
    image_encoders: Sequence[str] | None = None,
    text_encoders: Sequence[str] | None = None,
    layout: str = "auto",
    columns: Mapping[str, str] | None = None,
    genre_sep: str = "|",
    device: str = "cpu",
    progress: bool = False,
) -> IndexSummary:
    """Build or update the index at ``out`` from a catalog.

    Only movies that are new or changed since the last run are encoded; the previous
    generation stays readable until the new one is committed.

    Parameters
    ----------
    catalog : str, Path or Catalog
        A catalog folder (``movies.csv`` and posters, a Kaggle or MM-IMDb folder) or CSV file,
        or a catalog already read with :func:`embedgenre.catalog.read_catalog`.
    out : str or Path
        The index directory to create or update.
    image_encoders, text_encoders : list of str, optional
        Encoder registry names (``"clip:ViT-B-32@laion2b_s34b_b79k"``,
        ``"cnn:efficientnet-lite0"``, ``"hybrid:all-MiniLM-L6-v2"``). None keeps what the index
        holds, or, for a new index, the best encoders available offline.
    layout : str
        ``"auto"`` (detect), ``"csv"``, ``"kaggle"`` or ``"mmimdb"``.
    columns : mapping, optional
        Field (id, title, year, genres, plot, poster) to CSV column name.
    genre_sep : str
        The separator between genres in a CSV cell.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    IndexSummary
        What was encoded, kept, skipped (with reasons) and the generation committed.
    """
    if not isinstance(catalog, Catalog):
        catalog = read_catalog(catalog, layout=layout, columns=columns, genre_sep=genre_sep)
    return build_index(
        catalog,
        out,
        image_encoders=image_encoders,
        text_encoders=text_encoders,
        device=device,
        progress=progress,
    )


def train(
    index: IndexLike,
    method: str = "linear",
    modality: str = "poster",
    *,
    fusion: str | None = None,
    name: str | None = None,
    folds: int | None = DEFAULT_FOLDS,
    seed: int = 0,
    **params,
) -> Head:
    """Fit a head on the index's labelled movies, tune its thresholds on held-out predictions,
    and save it in the index.

    Parameters
    ----------
    index : str, Path or GenreIndex
        The index to train on (and to save the head in).
    method : str
        ``"zeroshot"``, ``"knn"``, ``"mlknn"``, ``"linear"`` or ``"mlp"``.
    modality : str
        ``"poster"``, ``"plot"`` or ``"both"``.
    fusion : str, optional
        With ``modality="both"``: ``"early"`` or ``"late"`` (the default).
    name : str, optional
        The head's name (default ``METHOD-MODALITY[-FUSION]``).
    folds : int or None
        Thresholds on out-of-fold predictions of this many folds; None for one validation part.
    seed : int
        Seed of the folds and of the MLP.
    **params
        The estimator's parameters (``k`` for knn, ``c`` for linear, ``hidden`` for mlp, ...).

    Returns
    -------
    Head
        The saved head: its name, method, modality and held-out scores (``.metrics``).
    """
    spec = HeadSpec(method, modality, fusion, params=params, seed=seed, folds=folds)
    return train_head(open_index(index), spec, name=name)


def similar(
    index: IndexLike,
    item_id: str | None = None,
    *,
    poster=None,
    plot: str | None = None,
    k: int = 10,
    by: str = "poster",
    genres: Sequence[str] = (),
    exclude_genres: Sequence[str] = (),
) -> RetrievalResult:
    """The movies most like an indexed movie (``item_id``), or a poster and/or plot that are
    not indexed.

    Parameters
    ----------
    index : str, Path or GenreIndex
        The index to search.
    item_id : str, optional
        An indexed movie's id.
    poster : str, Path or PIL.Image.Image, optional
        A poster that is not indexed.
    plot : str, optional
        A plot that is not indexed.
    k : int
        How many neighbours.
    by : str
        ``"poster"``, ``"plot"`` or ``"both"``.
    genres, exclude_genres : list of str
        Keep movies with one of ``genres``; leave out movies with any of ``exclude_genres``.

    Returns
    -------
    RetrievalResult
        The query and its neighbours (``.neighbours``: id, title, score, genres).
    """
    return Retriever(open_index(index)).similar(
        item_id=item_id,
        poster=poster,
        plot=plot,
        k=k,
        by=by,
        genres=genres,
        exclude_genres=exclude_genres,
    )


def search(
    index: IndexLike,
    text: str,
    *,
    k: int = 10,
    genres: Sequence[str] = (),
    exclude_genres: Sequence[str] = (),
) -> RetrievalResult:
    """Movies whose poster (CLIP's text tower) or else plot matches ``text``.

    Parameters
    ----------
    index : str, Path or GenreIndex
        The index to search.
    text : str
        A few words ("a lone cowboy at sunset").
    k : int
        How many results.
    genres, exclude_genres : list of str
        Genre filters, as for :func:`similar`.

    Returns
    -------
    RetrievalResult
        The matching movies, best first.
    """
    return Retriever(open_index(index)).search_text(
        text, k=k, genres=genres, exclude_genres=exclude_genres
    )


def evaluate_index(
    index: str | Path,
    report_dir: str | Path | None = None,
    config: EvalConfig | None = None,
) -> Evaluation:
    """Every method on one split of the index's movies, scored the way ``train`` ships them.

    Parameters
    ----------
    index : str or Path
        The index directory.
    report_dir : str or Path, optional
        Write the report (tables, JSON, figures) there.
    config : EvalConfig, optional
        Which methods, modalities and split (default: all of them).

    Returns
    -------
    Evaluation
        ``.result`` holds one row per approach with micro-/macro-/samples-F1 and mAP.
    """
    return _evaluate_index(index, config, report_dir)
