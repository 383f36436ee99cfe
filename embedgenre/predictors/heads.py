"""Heads: predictors trained on an index's embeddings and saved inside it, found by name.

Training and saving (under the writer lock, in a generation folder the manifest names),
loading, compatibility with the index (genres, encoders, dims, space) and the choice of a
default head live here; answering queries with a head is :mod:`embedgenre.predict`.

A head's ``head.json`` records the method, params, genre vocabulary, the embedding sets it was
trained on (modality -> encoder name, dim, space, set key), the thresholds and validation scores;
``arrays.npz`` its fitted arrays. kNN / ML-kNN heads store their training vectors and labels in
``arrays.npz`` so a head is self-contained (no reference back into the embedding set).

Inputs of a ``both`` head are ``[poster | plot]`` rows with zeros for a missing modality.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedgenre.encoders import load_set_encoder
from embedgenre.errors import EmbedgenreError, IndexStoreError, PredictorError
from embedgenre.features import set_input
from embedgenre.predictors.factory import DEFAULT_FOLDS, fit_with_validation, make_predictor
from embedgenre.store.paths import NAME_RE, check_name
from embedgenre.store.reader import now_iso
from embedgenre.store.schema import HeadRecord
from embedgenre.store.writer import IndexWriter

logger = logging.getLogger(__name__)

MODALITIES = ("poster", "plot", "both")


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
        }


# ------------------------------------------------------------------------------- sets / data


def _sets_for(index, modality: str, image_encoder: str | None, text_encoder: str | None) -> dict:
    if modality not in MODALITIES:
        raise PredictorError(
            f"Unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}."
        )
    wanted = ["poster", "plot"] if modality == "both" else [modality]
    return {m: index.get_set(m, image_encoder if m == "poster" else text_encoder) for m in wanted}


def _set_info(s) -> dict:
    return {"encoder": s.encoder, "dim": int(s.dim), "space": s.space, "key": s.key}


def training_data(index, sets: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X float32 (m, d), Y uint8 (m, g), item rows int64 (m,)) for the given embedding sets:
    every item with a vector in any of them (:func:`embedgenre.features.set_input`)."""
    return set_input(index.labels, sets)


def _check_zeroshot_sets(sets: dict) -> None:
    from embedgenre.predictors.zeroshot import require_text_side

    for s in sets.values():
        mods = tuple(s.describe.get("modalities", ()))
        require_text_side(type("SetEncoder", (), {"name": s.encoder, "modalities": mods})(), s.key)


def _zeroshot_params(index, sets: dict, params: dict) -> dict:
    """Zero-shot needs the text side of each set's space: the set's own encoder."""
    per = {m: {"encoder": load_set_encoder(s), "modality": m} for m, s in sets.items()}
    if len(sets) == 1:
        return {**params, **next(iter(per.values()))}
    return {**params, "poster_params": per["poster"], "plot_params": per["plot"]}


def default_head_name(method: str, modality: str, fusion: str | None) -> str:
    return f"{method}-{modality}" + (f"-{fusion}" if modality == "both" else "")


# ------------------------------------------------------------------------------- training


def train_head(
    index,
    method: str,
    modality: str = "poster",
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    fusion: str | None = None,
    params: dict | None = None,
    name: str | None = None,
    seed: int = 0,
    val_size: float = 0.2,
    threshold: str = "per_genre",
    metric: str = "micro_f1",
    save: bool = True,
    folds: int | None = DEFAULT_FOLDS,
    wait: float | None = 0,
) -> Head:
    """Fit ``method`` on the index's labelled items and save it: thresholds (and the fusion
    weight, MLP epochs) are chosen on held-out predictions, out-of-fold over ``folds`` folds or
    on one ``val_size`` validation split (``folds=None``), and the head is fitted on all items.
    Saving takes the index's writer lock (``wait`` seconds for another writer; None: for ever).

    ``modality`` "both" needs ``fusion`` "early" or "late" (default late). Zero-shot also works
    on an index without labels (default thresholds then). Returns the :class:`Head`.
    """
    params = dict(params or {})
    if method == "mlp":
        params.setdefault("seed", seed)
    sets = _sets_for(index, modality, image_encoder, text_encoder)
    if modality == "both":
        fusion = fusion or "late"
    elif fusion is not None:
        raise PredictorError("--fusion applies to --modality both only.")
    if method == "zeroshot":
        _check_zeroshot_sets(sets)
        if modality == "both" and fusion == "early":
            raise PredictorError("Zero-shot fuses poster and plot late only; use --fusion late.")
    name = name or default_head_name(method, modality, fusion)
    if not NAME_RE.match(name):
        raise PredictorError(
            f"Head name {name!r} is not allowed; use letters, digits, '.', '_' or '-' (max 64)."
        )
    genres = index.genres
    X, Y, rows = training_data(index, sets)
    labelled = Y.sum(axis=1) > 0
    if method == "zeroshot":
        params = _zeroshot_params(index, sets, params)
    dims = tuple(s.dim for s in sets.values()) if modality == "both" else None
    pred = make_predictor(
        method, fusion=fusion if modality == "both" else None, dims=dims, **params
    )
    t0 = time.perf_counter()
    if not labelled.any() or not genres:
        if method != "zeroshot":
            raise PredictorError(
                f"Index {index.path} has no genre labels, so {method} cannot be trained; only "
                "--method zeroshot works without labels (or re-index a catalog with genres)."
            )
        if not genres:
            from embedgenre.predictors.templates import DEFAULT_GENRES

            genres = list(DEFAULT_GENRES)
            Y = np.zeros((len(X), len(genres)), np.uint8)
        pred.fit(X, None, classes=genres)
        metrics = {}
    else:
        X, Y = X[labelled], Y[labelled]
        if len(X) < 10:
            raise PredictorError(
                f"Only {len(X)} labelled items with {modality} embeddings; need at least 10 "
                "to train and validate."
            )
        fit_with_validation(
            pred,
            X,
            Y,
            classes=genres,
            val_size=val_size,
            seed=seed,
            threshold=threshold,
            metric=metric,
            folds=folds,
        )
        metrics = pred.validation_
    fit_s = time.perf_counter() - t0
    info = {
        "name": name,
        "method": method,
        "modality": modality,
        "fusion": fusion,
        "encoders": {m: _set_info(s) for m, s in sets.items()},
        "genres": list(genres),
        "metrics": metrics,
        "seed": seed,
        "threshold": threshold,
        "metric": metric,
        "n_items": int(len(X)),
        "refit_on_all_items": bool(getattr(pred, "refit_", False)),
        "fit_seconds": round(fit_s, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    head = Head(name, pred, modality, info["encoders"], list(genres), metrics, info, saved=save)
    if save:
        path = save_head(index.path, pred, info, wait=wait)
        logger.info("saved head %s to %s", name, path)
    return head


def save_head(index_path, pred, info: dict, wait: float | None = 0) -> Path:
    """Save fitted ``pred`` as head ``info["name"]`` of the index at ``index_path``: written to a
    new generation folder and published by a manifest commit under the writer lock (``wait``
    seconds for another writer). Returns the head's folder."""
    from embedgenre.predictors.persist import save_predictor

    name = check_name(info["name"])
    with IndexWriter(index_path, wait=wait, command="embedgenre train") as writer:
        rel = f"heads/{name}-{writer.generation}"
        directory = writer.path / rel
        directory.parent.mkdir(parents=True, exist_ok=True)
        save_predictor(pred, directory, extra=info)
        record = HeadRecord(name, rel, info.get("method"), info.get("modality"), now_iso())
        heads = [h for h in writer.current.heads if h.name != name] + [record]
        writer.commit(writer.current.evolve(heads=heads))
    return directory


# ------------------------------------------------------------------------------- loading


def list_heads(index) -> list[dict]:
    """head.json documents (without arrays) of every head the index's manifest names."""
    from embedgenre.predictors.persist import read_head_json

    out = []
    for rec in index.heads:
        try:
            out.append(read_head_json(index.head_dir(rec.name)))
        except EmbedgenreError as e:
            logger.warning("skipping head %s: %s", rec.name, e)
    return out


def check_compatible(index, info: dict) -> None:
    """Raise PredictorError if a head does not fit the index (genres, encoders, dims, space)."""
    name = info.get("name", "?")
    if index.genres and list(info.get("genres", [])) != index.genres:
        raise PredictorError(
            f"Head {name!r} was trained on another genre vocabulary ({len(info.get('genres', []))} "
            f"genres) than index {index.path} ({len(index.genres)}); retrain it with "
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


def load_head(index, name: str) -> Head:
    """Load saved head ``name`` (a name, never a path) from the index, checking it fits."""
    from embedgenre.predictors.persist import load_predictor

    try:
        directory = index.head_dir(name)
    except IndexStoreError as e:
        raise PredictorError(str(e)) from None
    if directory is None:
        names = ", ".join(h.name for h in index.heads) or "none"
        raise PredictorError(
            f"No head named {name!r} in {index.path} (saved heads: {names}). "
            f"Train one with `embedgenre train {index.path} --method linear --name {name}`."
        )
    pred, doc = load_predictor(directory)
    missing = [k for k in ("name", "modality", "encoders", "genres") if k not in doc]
    if missing:
        raise PredictorError(
            f"Head {name!r} in {index.path} has no {', '.join(missing)} in head.json; it is "
            f"incomplete. Train it again with `embedgenre train {index.path} --name {name}`."
        )
    check_compatible(index, doc)
    if list(getattr(pred, "classes_", [])) != list(doc["genres"]):
        raise PredictorError(
            f"Head {name!r} in {index.path} scores {len(getattr(pred, 'classes_', []))} genres "
            f"but its head.json lists {len(doc['genres'])}; it is damaged. Train it again with "
            f"`embedgenre train {index.path} --name {name}`."
        )
    return Head(
        doc["name"],
        pred,
        doc["modality"],
        doc["encoders"],
        doc["genres"],
        doc.get("metrics", {}),
        doc,
        saved=True,
    )


def choose_head(index, has_poster: bool, has_plot: bool, name: str | None = None) -> Head:
    """The named head, else the best saved head (validation micro-F1) that can score the inputs,
    preferring heads that use every input given; else an unsaved zero-shot head when possible."""
    if name:
        head = load_head(index, name)
        needed = {"poster"} if has_poster else set()
        needed |= {"plot"} if has_plot and not has_poster else set()
        if not needed <= set(head.encoders):
            raise PredictorError(
                f"Head {name!r} uses {', '.join(head.encoders)} embeddings; it cannot score "
                f"{' and '.join(sorted(needed))} input. Choose another head or give the "
                f"{' and '.join(head.encoders)} input."
            )
        return head
    given = {m for m, ok in (("poster", has_poster), ("plot", has_plot)) if ok}
    ranked = []
    for doc in list_heads(index):
        mods = set(doc.get("encoders", {}))
        if not mods & given or (has_poster and "poster" not in mods):
            continue
        try:
            check_compatible(index, doc)
        except PredictorError as e:
            logger.info("not using head %s: %s", doc.get("name"), e)
            continue
        covers = given <= mods
        ranked.append((covers, doc.get("metrics", {}).get("micro_f1", -1.0), doc["name"]))
    if ranked:
        best = max(ranked)
        logger.info("using head %s (validation micro-F1 %.3f)", best[2], best[1])
        return load_head(index, best[2])
    modality = "both" if len(given) == 2 else next(iter(given))
    logger.info("no saved head fits the inputs; trying zero-shot on %s", modality)
    try:
        head = train_head(index, "zeroshot", modality=modality, save=False)
    except PredictorError as e:
        raise PredictorError(
            f"No trained head in {index.path} can score {' + '.join(sorted(given))} input, and "
            f"zero-shot is not possible: {e} Train one with "
            f"`embedgenre train {index.path} --method linear --modality {modality}`."
        ) from e
    head.name = f"zeroshot-{modality} (unsaved)"
    return head
