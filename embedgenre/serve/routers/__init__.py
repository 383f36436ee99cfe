"""The HTTP API, a router per resource: health, items (index, movies, thumbnails), predict,
similar (and text search)."""

from embedgenre.serve.routers import health, items, predict, similar

ROUTERS = (health.router, items.router, predict.router, similar.router)

__all__ = ["ROUTERS"]
