"""embedgenre: predict a movie's genres from its poster and plot, and find similar posters.

Posters and plots are encoded once into embeddings, stored in an index directory on disk
(:mod:`embedgenre.store`), and every predictor, evaluation and retrieval works from there.
"""

from __future__ import annotations

__version__ = "0.1.0"

from embedgenre.errors import EmbedgenreError

__all__ = ["EmbedgenreError", "__version__"]
