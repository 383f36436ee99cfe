"""The HTTP API, a router per resource: health, items (index, movies, thumbnails), predict,
similar (and text search), browse (a movie's labelled vs predicted genres, the label audit)."""

from embedgenre.serve.routers import browse, health, items, predict, similar

ROUTERS = (health.router, items.router, predict.router, similar.router, browse.router)

__all__ = ["ROUTERS"]
