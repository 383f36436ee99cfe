"""Heads saved in an index: the :class:`Head` record, saving under the writer lock, listing,
loading by name and the check that a head fits the index (genres, encoders, dims, space).

A head's scores are columns named by the genres it was trained on; they are matched to the
index's vocabulary by name (:func:`bind_head`), so a head trained before new movies or new genres
arrived keeps scoring every genre it knows and says which genres of the index it cannot score.

A head's ``head.json`` records the method, params, genre vocabulary, the embedding sets it was
trained on (modality -> encoder name, dim, space, set key), the thresholds and validation scores;
``arrays.npz`` its fitted arrays (:mod:`embedgenre.heads.files`). kNN / ML-kNN heads store their
training vectors and labels, so a head is self-contained. Heads live in generation folders that
the manifest names, so a reader never sees half a head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from embedgenre.errors import EmbedgenreError, IndexStoreError, PredictorError, UnknownHeadError
from embedgenre.heads.files import load_predictor, read_head_json, save_predictor
from embedgenre.store.paths import check_name
from embedgenre.store.reader import now_iso
from embedgenre.store.schema import HeadRecord
from embedgenre.vocabulary import Coverage, coverage

logger = logging.getLogger(__name__)


@dataclass
class Head:
    """A fitted predictor plus what it was trained on."""

    name: str
    predictor: object
    modality: str
    encoders: dict[str, dict]  # modality -> {encoder, dim, space, key}
    genres: list[str]
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # everything else from head.json
    saved: bool = True
    unscored: list[str] = field(default_factory=list)  # index genres the head was not trained on

    @property
    def method(self) -> str:
        return self.info.get("method", getattr(self.predictor, "method", "?"))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "method": self.method,
            "modality": self.modality,
            "fusion": self.info.get("fusion"),
            "encoders": {m: e["encoder"] for m, e in self.encoders.items()},
            "validation": self.metrics,
            "saved": self.saved,
            "unscored_genres": list(self.unscored),
        }


def save_head(index_path, pred, info: dict, wait: float | None = 0) -> Path:
    """Save fitted ``pred`` as head ``info["name"]`` of the index at ``index_path``: written to a
    new generation folder and published by a manifest commit under the writer lock (``wait``
    seconds for another writer). Returns the head's folder."""
    name = check_name(info["name"])
    from embedgenre.store.writer import IndexWriter  # here: predicting never writes

    with IndexWriter(index_path, wait=wait, command="embedgenre train") as writer:
        rel = f"heads/{name}-{writer.generation}"
        directory = writer.path / rel
        directory.parent.mkdir(parents=True, exist_ok=True)
        save_predictor(pred, directory, extra=info)
        record = HeadRecord(name, rel, info.get("method"), info.get("modality"), now_iso())
        heads = [h for h in writer.current.heads if h.name != name] + [record]
        writer.commit(writer.current.evolve(heads=heads))
    return directory


def list_heads(index) -> list[dict]:
    """head.json documents (without arrays) of every head the index's manifest names."""
    out = []
    for rec in index.heads:
        try:
            out.append(read_head_json(index.head_dir(rec.name)))
        except EmbedgenreError as e:
            logger.warning("skipping head %s: %s", rec.name, e)
    return out


def check_compatible(index, info: dict) -> Coverage:
    """Raise PredictorError if a head does not fit the index (encoders, dims, space, or not one
    genre in common); else how its genres meet the index's, matched by name."""
    name = info.get("name", "?")
    genres = [g for g in info.get("genres", []) if isinstance(g, str)]
    covered = coverage(genres, index.genres)
    if index.genres and not covered.scored:
        raise PredictorError(
            f"Head {name!r} scores none of the {len(index.genres)} genres of index {index.path} "
            f"(it was trained on {', '.join(genres[:5]) or 'no genres'}"
            f"{', ...' if len(genres) > 5 else ''}); retrain it with "
            f"`embedgenre train {index.path} --method {info.get('method')} --name {name}`."
        )
    encoders = info.get("encoders")
    if not isinstance(encoders, dict) or not all(isinstance(e, dict) for e in encoders.values()):
        raise PredictorError(
            f"Head {name!r} does not say which embeddings it scores; train it again."
        )
    for modality, enc in encoders.items():
        have = [s for s in index.sets if s.modality == modality]
        match = [s for s in have if s.encoder == enc.get("encoder") and s.dim == enc.get("dim")]
        if not match:
            held = ", ".join(f"{s.encoder} ({s.dim}-d)" for s in have) or "none"
            raise PredictorError(
                f"Head {name!r} was trained on {modality} embeddings by {enc.get('encoder')} "
                f"({enc.get('dim')}-d), but index {index.path} holds {modality} embeddings by: {held}. "
                f"Retrain it with `embedgenre train {index.path} --method {info.get('method')}`."
            )
        if "space" in enc and not any(s.space == enc["space"] for s in match):
            raise PredictorError(
                f"Head {name!r} was trained on {modality} embeddings of space {enc['space']!r}, "
                f"but the index's {enc['encoder']} embeddings are now of space "
                f"{match[0].space!r} (the encoder was refitted when the index was rebuilt), so "
                f"its scores would be meaningless. Retrain it with `embedgenre train "
                f"{index.path} --method {info.get('method')} --name {name}`."
            )
    return covered


def bind_head(index, pred, doc: dict, saved: bool = True) -> Head:
    """The :class:`Head` of fitted ``pred`` (described by its ``head.json`` document ``doc``)
    for answering from ``index``: checked to fit it, its genres matched to the index's by name.
    A genre of the index the head was not trained on is listed in :attr:`Head.unscored` and
    logged."""
    name = doc["name"]
    covered = check_compatible(index, doc)
    if list(getattr(pred, "classes_", [])) != list(doc["genres"]):
        raise PredictorError(
            f"Head {name!r} in {index.path} scores {len(getattr(pred, 'classes_', []))} genres "
            f"but its head.json lists {len(doc['genres'])}; it is damaged. Train it again with "
            f"`embedgenre train {index.path} --name {name}`."
        )
    if covered.unscored:
        logger.warning(
            "head %s was trained before %d genre(s) of index %s existed and cannot score them: "
            "%s; retrain it to score them (`embedgenre train %s --method %s --name %s`)",
            name,
            len(covered.unscored),
            index.path,
            ", ".join(covered.unscored),
            index.path,
            doc.get("method"),
            name,
        )
    return Head(
        name,
        pred,
        doc["modality"],
        doc["encoders"],
        list(doc["genres"]),
        doc.get("metrics", {}),
        doc,
        saved=saved,
        unscored=covered.unscored,
    )


def load_head(index, name: str) -> Head:
    """Load saved head ``name`` (a name, never a path) from the index, checking it fits."""
    try:
        directory = index.head_dir(name)
    except IndexStoreError as e:
        raise PredictorError(str(e)) from None
    if directory is None:
        names = ", ".join(h.name for h in index.heads) or "none"
        raise UnknownHeadError(
            f"No head named {name!r} in {index.path} (saved heads: {names}).",
            f"Train one named {name!r}, or ask for one of the saved heads.",
            param="head",
        )
    pred, doc = load_predictor(directory)
    missing = [k for k in ("name", "modality", "encoders", "genres") if k not in doc]
    if missing:
        raise PredictorError(
            f"Head {name!r} in {index.path} has no {', '.join(missing)} in head.json; it is "
            f"incomplete. Train it again with `embedgenre train {index.path} --name {name}`."
        )
    return bind_head(index, pred, doc)
