"""What an evaluation reads: labels, poster paths and embedding sets, independent of storage.

:func:`from_index` takes them from a :class:`~embedgenre.store.GenreIndex`; tests can build an
:class:`EvalData` from synthetic arrays directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedgenre.heads.training import set_prompts
from embedgenre.store import GenreIndex

logger = logging.getLogger(__name__)


@dataclass
class EmbeddingView:
    """One embedding set: ``vectors[i]`` (float32, L2-normalised) belongs to item ``rows[i]``."""

    modality: str  # "poster" | "plot"
    encoder: str  # registry name
    rows: np.ndarray  # int64 (m,), positions into EvalData items
    vectors: np.ndarray  # float32 (m, dim)
    modalities: tuple[str, ...] = ("image",)  # what the encoder embeds; "text" = zero-shot possible
    default: bool = False  # the default set of its modality

    @property
    def has_text_side(self) -> bool:
        return "text" in self.modalities

    def matrix(self, items: np.ndarray) -> np.ndarray:
        """Vectors of item positions ``items`` (k,) -> float32 (k, dim); every item must be present."""
        pos = np.full(int(max(self.rows.max(initial=-1), items.max(initial=-1))) + 1, -1, np.int64)
        pos[self.rows] = np.arange(len(self.rows))
        got = pos[items]
        if (got < 0).any():
            raise ValueError(
                f"{self.modality}:{self.encoder} has no vector for some requested items."
            )
        return np.ascontiguousarray(self.vectors[got], dtype=np.float32)

    def padded(self, items: np.ndarray) -> np.ndarray:
        """Like :meth:`matrix`, with a row of zeros for an item without a vector (missing)."""
        pos = {int(r): i for i, r in enumerate(self.rows)}
        take = np.array([pos.get(int(i), -1) for i in items], dtype=np.int64)
        out = np.zeros((len(items), self.vectors.shape[1]), dtype=np.float32)
        out[take >= 0] = self.vectors[take[take >= 0]]
        return out


@dataclass
class EvalData:
    """Everything an evaluation needs, row-aligned over n items."""

    ids: list[str]
    genres: list[str]
    labels: np.ndarray  # uint8 (n, g)
    posters: list[str | None]
    sets: list[EmbeddingView]
    source: str = "synthetic"
    # the genre prompts embedded in a view's space (dim, n_genres), for zero-shot; None = none
    prompts: Callable[[EmbeddingView, list[str]], np.ndarray] | None = None
    extra: dict = field(default_factory=dict)

    def default_set(self, modality: str) -> EmbeddingView | None:
        views = [v for v in self.sets if v.modality == modality]
        return next((v for v in views if v.default), views[0] if views else None)


def from_index(index_path: str | Path) -> EvalData:
    """Read an index directory into :class:`EvalData` (vectors stay memory-mapped)."""
    idx = GenreIndex.open(index_path)
    views = []
    defaults = {}
    for modality in ("poster", "plot"):
        try:
            defaults[modality] = idx.get_set(modality).key
        except Exception:  # no set of that modality
            defaults[modality] = None
    by_view = {}
    for s in idx.sets:
        v = EmbeddingView(
            modality=s.modality,
            encoder=s.encoder,
            rows=np.asarray(s.rows, dtype=np.int64),
            vectors=s.vectors,
            modalities=tuple(
                s.describe.get("modalities", ("image",) if s.modality == "poster" else ("text",))
            ),
            default=s.key == defaults.get(s.modality),
        )
        views.append(v)
        by_view[id(v)] = s

    def prompts(view: EmbeddingView, genres: list[str]) -> np.ndarray:
        return set_prompts({view.modality: by_view[id(view)]}, genres, idx)[0][view.modality]

    return EvalData(
        ids=list(idx.ids),
        genres=list(idx.genres),
        labels=np.asarray(idx.labels, dtype=np.uint8),
        posters=[it.get("poster") for it in idx.items],
        sets=views,
        source=str(idx.path),
        prompts=prompts,
    )
