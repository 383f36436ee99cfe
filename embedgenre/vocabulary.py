"""The genre vocabulary: which genres an index knows, in an order that never changes under a head.

A new catalog's vocabulary is ordered by frequency (most common first, then by name). An index
keeps its vocabulary from one run to the next (:func:`extend`): the genres it knows keep their
position, genres new to it are appended, and a genre no movie carries any more stays, with a
count of 0 ("retired"), until the caller asks to drop it. Heads record the genres they score,
by name; :func:`coverage` says which genres of the index a head can and cannot score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def by_frequency(genre_lists: Iterable[Iterable[str]]) -> list[str]:
    """Every genre that occurs in ``genre_lists`` (one list per movie), most frequent first,
    ties by name."""
    counts = Counter(g for genres in genre_lists for g in genres)
    return sorted(counts, key=lambda g: (-counts[g], g))


@dataclass(frozen=True)
class Vocabulary:
    """An index's genres in their kept order, with the number of movies carrying each
    (0: retired, kept so the order does not move)."""

    genres: tuple[str, ...]
    counts: Mapping[str, int]

    @property
    def active(self) -> list[str]:
        """The genres some movie carries, in vocabulary order (the label columns)."""
        return [g for g in self.genres if self.counts.get(g, 0) > 0]

    @property
    def retired(self) -> list[str]:
        """The genres no movie carries any more, in vocabulary order."""
        return [g for g in self.genres if self.counts.get(g, 0) <= 0]


@dataclass(frozen=True)
class VocabularyChange:
    """What one indexing run did to the vocabulary."""

    vocabulary: Vocabulary
    added: list[str]  # new genres, appended
    retired: list[str]  # kept genres no movie carries (count 0)
    dropped: list[str]  # retired genres removed on request


def extend(
    previous: Sequence[str] | None,
    counts: Mapping[str, int],
    order: Sequence[str],
    drop_unused: bool = False,
) -> VocabularyChange:
    """The vocabulary after a run whose movies carry ``counts`` (genre -> movies).

    ``previous``: the vocabulary the index had (None for a new index); its genres keep their
    position. Genres it lacks are appended in ``order`` (the catalog's own, most frequent first).
    A previous genre with no movie stays with count 0 unless ``drop_unused``.
    """
    known = list(previous or [])
    old = set(known)
    added = [g for g in order if counts.get(g, 0) > 0 and g not in old]
    added += sorted(g for g, n in counts.items() if n > 0 and g not in old and g not in added)
    unused = [g for g in known if counts.get(g, 0) <= 0]
    dropped = unused if drop_unused else []
    genres = tuple(g for g in known if g not in dropped) + tuple(added)
    vocabulary = Vocabulary(genres, {g: int(counts.get(g, 0)) for g in genres})
    return VocabularyChange(
        vocabulary,
        added=added,
        retired=[g for g in unused if not drop_unused],
        dropped=dropped,
    )


@dataclass(frozen=True)
class Coverage:
    """How a head's genres (the columns of its scores) meet an index's vocabulary, by name."""

    scored: list[str]  # index genres the head scores
    unscored: list[str]  # index genres the head was never trained on
    unknown: list[str]  # genres the head scores that the index no longer has


def coverage(head_genres: Sequence[str], index_genres: Sequence[str]) -> Coverage:
    """Match a head's genres to an index's active genres by name (order does not matter)."""
    head, index = set(head_genres), set(index_genres)
    return Coverage(
        scored=[g for g in index_genres if g in head],
        unscored=[g for g in index_genres if g not in head],
        unknown=[g for g in head_genres if g not in index],
    )
