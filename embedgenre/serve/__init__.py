"""``embedgenre serve``: genre tagging and "more like this" over HTTP, with a web page.

    from embedgenre.serve import ServeConfig, create_app
    app = create_app(ServeConfig(index_dir="indexes/posters"))   # an ASGI app (FastAPI)

Modules: :mod:`.config` (settings and bind checks), :mod:`.service` (the index generation being
served, shared encoders, hot switch to new generations), :mod:`.batching` (micro-batches of
concurrent requests' posters and plots), :mod:`.uploads` (reading and checking uploads),
:mod:`.guard` (Host, token, body cap, timeout, request ids and logs), :mod:`.server` (uvicorn
with limits on each request's head), :mod:`.metrics` (Prometheus),
:mod:`.problems` (errors as JSON), :mod:`.models` (request and response models),
:mod:`.routers` (the API, a router per resource), :mod:`.app` (assembly) and
``static/`` (the web page; every asset is local).
"""

from __future__ import annotations

from embedgenre.serve.app import create_app
from embedgenre.serve.config import ServeConfig, check_bind, read_token_file

__all__ = ["ServeConfig", "check_bind", "create_app", "read_token_file"]
