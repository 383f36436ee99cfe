"""Encoding on an existing cluster engine (Ray Data), behind the same interface as the local one.

Install with ``pip install 'embedgenre[distributed]'``. Choosing an engine by name:

    engine = make_engine("ray", address="auto", workers=4)
    build_index(catalog, out, engine=engine)
"""

from __future__ import annotations

from embedgenre.distributed.ray_engine import INSTALL_HINT, RayEngine
from embedgenre.engines import LocalEngine
from embedgenre.errors import BadInputError

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "INSTALL_HINT", "RayEngine", "make_engine"]


def make_engine(
    name: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
):
    """The engine called ``name`` ("local" or "ray"); Ray options are refused for "local"."""
    if name == "local":
        if address is not None or workers is not None or gpus_per_worker:
            given = [
                p
                for p, v in (
                    ("address", address),
                    ("workers", workers),
                    ("gpus_per_worker", gpus_per_worker),
                )
                if v
            ]
            raise BadInputError(
                "A Ray address, worker count and GPUs per worker apply to the ray engine only;",
                "choose the ray engine, or leave them out to encode in this process.",
                param=given[0] if given else None,
            )
        return LocalEngine()
    if name == "ray":
        return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker)
    raise BadInputError(
        f"unknown engine {name!r};", f"expected one of {', '.join(ENGINES)}.", param="engine"
    )
