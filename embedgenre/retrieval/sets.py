"""An index as retrieval reads it: its embedding sets as :class:`~embedgenre.retrieval.rank.Source`
objects (search on the chosen device, cosine statistics, item positions), its items by row, and
the genre filters."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedgenre import ann
from embedgenre.encoders import load_set_encoder
from embedgenre.errors import RetrievalError
from embedgenre.retrieval.rank import Source, pair_statistics, positions_of


class IndexSets:
    """One index's embedding sets ready to rank, with what each query reads more than once kept.

    Its settings come from :class:`~embedgenre.retrieval.Retriever`, which documents them and
    holds their defaults.
    """

    def __init__(
        self,
        index,
        *,
        image_encoder: str | None,
        device: str,
        nprobe: int | None,
        ef_search: int | None,
        encoder_loader: Callable | None,
    ):
        self.index = index
        self.image_encoder = image_encoder
        self.encoder_loader = encoder_loader or load_set_encoder
        self.device = device
        self.nprobe = nprobe
        self.ef_search = ef_search
        self._stats: dict[str, tuple[float, float]] = {}
        self._positions: dict[str, np.ndarray] = {}
        self._gpu: dict[str, Any] = {}
        self._poster_rows: dict[Path, int] | None = None

    @property
    def n_items(self) -> int:
        return len(self.index.ids)

    def warm(self) -> None:
        """Compute what the first query of each embedding set would (cosine statistics, the
        FAISS index)."""
        for emb in self.index.sets:
            self._statistics(emb)
            _ = emb.faiss_index

    # -- embedding sets ------------------------------------------------------------------

    def get(self, modality: str, required: bool = True):
        """The embedding set of ``modality`` (posters: the chosen encoder's); None when the index
        has none and it is not ``required``."""
        encoder = self.image_encoder if modality == "poster" else None
        if not required and not any(s.modality == modality for s in self.index.sets):
            return None
        return self.index.get_set(modality, encoder)

    def encoder(self, emb):
        """The query encoder of the embedding set ``emb``."""
        return self.encoder_loader(emb, device=self.device)

    def search_fn(self, emb):
        """``search(queries (n, d), k) -> (scores, item rows)`` over ``emb`` on the device."""
        if self.device.startswith("cuda"):
            if emb.key not in self._gpu:  # faiss-gpu, else exact torch search on the GPU
                self._gpu[emb.key] = ann.device_index(emb.faiss_index, self.device)
            index = self._gpu[emb.key]
        else:
            index = emb.faiss_index
        ann.set_search_params(index, nprobe=self.nprobe, ef_search=self.ef_search)

        def search(queries: np.ndarray, k: int):
            if len(emb.rows) == 0:  # nothing to find: every neighbour is missing
                n = len(np.atleast_2d(queries))
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            scores, pos = ann.search(index, queries, k)
            rows = np.where(pos >= 0, emb.rows[np.clip(pos, 0, None)], -1)
            return scores, rows

        return search

    def source(self, emb, query: np.ndarray | None, weight: float = 1.0) -> Source:
        """``emb`` as a :class:`Source` asked ``query`` (d,) (None: no query vector)."""
        mean, std = self._statistics(emb)
        return Source(
            name=emb.modality,
            rows=emb.rows,
            # a plain view of the memory map: rows are read without np.memmap's per-access cost
            vectors=np.asarray(emb.vectors),
            search=self.search_fn(emb),
            query=None if query is None else np.asarray(query, dtype=np.float32),
            weight=weight,
            mean=mean,
            std=std,
            positions=self.positions_of(emb),
        )

    def _statistics(self, emb) -> tuple[float, float]:
        if emb.key not in self._stats:
            self._stats[emb.key] = pair_statistics(emb.vectors)
        return self._stats[emb.key]

    def positions_of(self, emb) -> np.ndarray:
        """int64 (n_items,): each item's position in ``emb``, -1 where it has no vector."""
        if emb.key not in self._positions:
            self._positions[emb.key] = positions_of(emb.rows, self.n_items)
        return self._positions[emb.key]

    def stored_vector(self, emb, row: int) -> np.ndarray | None:
        """float32 (d,): item ``row``'s vector in ``emb``, or None where it has none."""
        at = int(self.positions_of(emb)[row])
        return np.asarray(emb.vectors[at], dtype=np.float32) if at >= 0 else None

    # -- items ---------------------------------------------------------------------------

    def genre_mask(self, genres: Sequence[str] = (), exclude_genres: Sequence[str] = ()):
        """bool (n_items,): items with at least one of ``genres`` and none of ``exclude_genres``."""
        if not genres and not exclude_genres:
            return None
        vocab = {g.lower(): j for j, g in enumerate(self.index.genres)}

        def cols(names, param):
            out = []
            for g in names:
                if g.lower() not in vocab:
                    raise RetrievalError(
                        f"unknown genre {g!r};",
                        f"this index knows: {', '.join(self.index.genres)}.",
                        param=param,
                    )
                out.append(vocab[g.lower()])
            return out

        labels = self.index.labels
        keep = np.ones(len(labels), dtype=bool)
        if genres:
            keep &= labels[:, cols(genres, "genres")].any(axis=1)
        if exclude_genres:
            keep &= ~labels[:, cols(exclude_genres, "exclude_genres")].any(axis=1)
        return keep

    def row_of_poster(self, path: Path) -> int | None:
        """The row of the first item whose poster is the file ``path``, or None. The map from
        poster files to rows is built on the first call and kept."""
        if self._poster_rows is None:
            self._poster_rows = {}
            for row, item in enumerate(self.index.items):
                if item.get("poster"):
                    self._poster_rows.setdefault(Path(item["poster"]).resolve(), row)
        return self._poster_rows.get(path.resolve())

    def describe_row(self, row: int) -> dict[str, Any]:
        """Item ``row`` as results show it: id, title, year, genres, poster."""
        item = self.index.items[row]
        return {
            "id": item["id"],
            "title": item.get("title"),
            "year": item.get("year"),
            "genres": list(item.get("genres") or []),
            "poster": item.get("poster"),
        }

    def id_hint(self, given: str) -> str:
        """What to ask for instead of an unknown id: the ids of movies titled ``given``, else
        ids spelled like it, else what ids look like."""
        ids = self.index.ids
        if not len(ids):
            return "the index holds no items."
        wanted = given.strip().casefold()
        items = self.index.items if len(ids) <= 200_000 else []  # a hint is not worth a scan
        titled = [it["id"] for it in items if (it.get("title") or "").casefold() == wanted]
        if titled:
            return f"a movie titled {given!r} has id {', '.join(map(repr, titled[:3]))}."
        near = difflib.get_close_matches(given, ids[:100_000], n=3, cutoff=0.75)
        if near:
            return f"did you mean {', '.join(map(repr, near))}?"
        return f"ids look like {ids[0]!r}."
