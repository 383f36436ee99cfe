"""Prompt templates for zero-shot genre prediction, kept as data.

Each genre is written into every template of its modality; the embeddings of the prompts are
averaged and re-normalised into one column of the (dim x genres) prompt matrix.
"""

from __future__ import annotations

POSTER_TEMPLATES: tuple[str, ...] = (
    "a poster of a {genre} movie.",
    "a movie poster for a {genre} film.",
    "the official poster of a {genre} film.",
    "a {genre} movie poster.",
    "key art for a {genre} movie.",
    "a promotional poster of a {genre} picture.",
)

PLOT_TEMPLATES: tuple[str, ...] = (
    "A {genre} movie.",
    "The plot of a {genre} film.",
    "This is a {genre} story.",
    "A synopsis of a {genre} movie.",
    "The film is a {genre}.",
)

TEMPLATES: dict[str, tuple[str, ...]] = {"poster": POSTER_TEMPLATES, "plot": PLOT_TEMPLATES}

# How a genre is written inside a prompt when its label reads oddly as English.
GENRE_WORDS: dict[str, str] = {
    "Sci-Fi": "science fiction",
    "Film-Noir": "film noir",
    "Reality-TV": "reality TV",
    "Talk-Show": "talk show",
    "Game-Show": "game show",
    "Short": "short",
    "Biography": "biographical",
    "History": "historical",
    "Music": "music",
    "War": "war",
    "Sport": "sports",
}


def prompts_for(genre: str, modality: str) -> list[str]:
    """The prompts of one genre for ``modality`` ("poster" or "plot")."""
    if modality not in TEMPLATES:
        raise ValueError(f"Unknown modality {modality!r}; choose one of {', '.join(TEMPLATES)}.")
    word = GENRE_WORDS.get(genre, genre.lower())
    return [t.format(genre=word) for t in TEMPLATES[modality]]


# Used by zero-shot when an index has no genre vocabulary at all (a catalog without labels).
DEFAULT_GENRES: tuple[str, ...] = (
    "Drama",
    "Comedy",
    "Romance",
    "Action",
    "Crime",
    "Thriller",
    "Adventure",
    "Documentary",
    "Horror",
    "Mystery",
    "Fantasy",
    "Family",
    "Biography",
    "Sci-Fi",
    "Music",
    "Animation",
    "History",
    "Sport",
    "War",
    "Musical",
    "Western",
)
