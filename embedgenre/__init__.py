"""embedgenre: predict a movie's genres from its poster and plot, and find similar movies.

Posters and plots are encoded once into embeddings, stored in an index directory on disk, and
every predictor, evaluation and retrieval works from there. The main job::

    import embedgenre

    embedgenre.index("movies/", "indexes/movies")
    embedgenre.train("indexes/movies", method="linear", modality="poster")
    predictor = embedgenre.Predictor.open("indexes/movies")
    print(predictor.predict(posters=["poster.jpg"]).results[0].genres)

Names are imported on first use, so ``import embedgenre`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "index": "embedgenre.api",
    "open_index": "embedgenre.api",
    "train": "embedgenre.api",
    "similar": "embedgenre.api",
    "search": "embedgenre.api",
    "evaluate_index": "embedgenre.api",
    "Predictor": "embedgenre.predict",
    "PredictResult": "embedgenre.predict",
    "Prediction": "embedgenre.predict",
    "GenreScore": "embedgenre.predict",
    "Retriever": "embedgenre.retrieval",
    "RetrievalResult": "embedgenre.retrieval",
    "GenreIndex": "embedgenre.store",
    "read_catalog": "embedgenre.catalog",
    "Catalog": "embedgenre.catalog",
    "tag_library": "embedgenre.library.tag",
    "undo_tags": "embedgenre.library.tag",
    "EvalConfig": "embedgenre.evaluate.runner",
    "EmbedgenreError": "embedgenre.errors",
    "CatalogError": "embedgenre.errors",
    "PosterError": "embedgenre.errors",
    "IndexStoreError": "embedgenre.errors",
    "PredictorError": "embedgenre.errors",
    "WeightsNotFoundError": "embedgenre.errors",
    "WriteError": "embedgenre.errors",
}

__all__ = [
    "Catalog",
    "CatalogError",
    "EmbedgenreError",
    "EvalConfig",
    "GenreIndex",
    "GenreScore",
    "IndexStoreError",
    "PosterError",
    "PredictResult",
    "Prediction",
    "Predictor",
    "PredictorError",
    "RetrievalResult",
    "Retriever",
    "WeightsNotFoundError",
    "WriteError",
    "__version__",
    "evaluate_index",
    "index",
    "open_index",
    "read_catalog",
    "search",
    "similar",
    "tag_library",
    "train",
    "undo_tags",
]

if TYPE_CHECKING:
    from embedgenre.api import evaluate_index, index, open_index, search, similar, train
    from embedgenre.catalog import Catalog, read_catalog
    from embedgenre.errors import (
        CatalogError,
        EmbedgenreError,
        IndexStoreError,
        PosterError,
        PredictorError,
        WeightsNotFoundError,
        WriteError,
    )
    from embedgenre.evaluate.runner import EvalConfig
    from embedgenre.library.tag import tag_library, undo_tags
    from embedgenre.predict import GenreScore, Prediction, Predictor, PredictResult
    from embedgenre.retrieval import RetrievalResult, Retriever
    from embedgenre.store import GenreIndex


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedgenre' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
