"""Seeded synthetic embeddings for tests and benchmarks of nearest-neighbour search."""

from __future__ import annotations

import numpy as np


def synthetic_vectors(
    n: int, dim: int = 512, *, n_clusters: int = 10_000, seed: int = 0, chunk: int = 100_000
) -> np.ndarray:
    """Seeded, L2-normalised float32 (n, dim) vectors shaped like real embeddings, for tests and
    benchmarks (:func:`synthetic_chunks` gives the same rows a chunk at a time).

    Points scatter around ``n_clusters`` centres that themselves group around 100 super-centres;
    the scatter has a power-law spectrum (std of the j-th of ``dim`` random directions ~ j^-1/2).
    Real embeddings have this kind of low intrinsic dimension; i.i.d. Gaussian vectors in 512-d have
    none (every point is nearly equidistant from every other) and are no test of an ANN index.
    """
    out = np.empty((n, dim), dtype=np.float32)
    start = 0
    for block in synthetic_chunks(n, dim, n_clusters=n_clusters, seed=seed, chunk=chunk):
        out[start : start + len(block)] = block
        start += len(block)
    return out


def synthetic_chunks(
    n: int, dim: int = 512, *, n_clusters: int = 10_000, seed: int = 0, chunk: int = 100_000
):
    """The rows of :func:`synthetic_vectors` as float32 arrays of at most ``chunk`` rows, so
    more vectors than fit in memory can be generated."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    sup = unit(rng.standard_normal((100, dim), dtype=np.float32))
    centres = unit(rng.standard_normal((n_clusters, dim), dtype=np.float32))
    centres = unit(sup[rng.integers(0, len(sup), n_clusters)] + 0.8 * centres)
    spectrum = np.arange(1, dim + 1, dtype=np.float32) ** -0.5
    spectrum *= 0.9 / np.sqrt((spectrum**2).sum())
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        which = rng.integers(0, n_clusters, m)
        scatter = (rng.standard_normal((m, dim), dtype=np.float32) * spectrum) @ rotation
        yield unit(centres[which] + scatter).astype(np.float32, copy=False)
