"""Training a head on an index: the labelled items' inputs (:mod:`embedgenre.features`), the
spec's fit (:meth:`embedgenre.predictors.spec.HeadSpec.fit`, the same call ``evaluate`` makes for
each of its rows) and saving the result (:func:`embedgenre.heads.saved.save_head`)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace

import numpy as np

from embedgenre.encoders import load_set_encoder
from embedgenre.errors import PredictorError
from embedgenre.features import set_input
from embedgenre.heads.saved import Head, list_heads, load_head, save_head
from embedgenre.predictors.spec import HeadSpec
from embedgenre.predictors.state import json_safe
from embedgenre.predictors.templates import DEFAULT_GENRES, prompts_for
from embedgenre.predictors.thresholds import apply_thresholds
from embedgenre.predictors.tuning import DEFAULT_FOLDS
from embedgenre.predictors.zeroshot import prompt_matrix, require_text_side
from embedgenre.store.paths import NAME_RE

logger = logging.getLogger(__name__)


def head_sets(index, modality: str, image_encoder=None, text_encoder=None) -> dict:
    """{modality: EmbeddingSet} a head of ``modality`` ("poster", "plot", "both") reads."""
    wanted = ["poster", "plot"] if modality == "both" else [modality]
    return {m: index.get_set(m, image_encoder if m == "poster" else text_encoder) for m in wanted}


def set_info(s) -> dict:
    return {"encoder": s.encoder, "dim": int(s.dim), "space": s.space, "key": s.key}


def prompts_fingerprint(s, genres: list[str], modality: str) -> str:
    """What a prompt matrix depends on: the set's encoder and space, the prompts (templates x
    genre vocabulary, in order)."""
    prompts = [p for g in genres for p in prompts_for(g, modality)]
    doc = json.dumps([s.encoder, s.space, prompts], ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:16]


def _saved_prompts(index, fingerprint: str, modality: str) -> np.ndarray | None:
    """The prompt matrix a saved zero-shot head of the index holds for ``fingerprint``."""
    for doc in list_heads(index):
        if doc.get("method") != "zeroshot" or doc.get("prompts", {}).get(modality) != fingerprint:
            continue
        try:
            pred = load_head(index, doc["name"]).predictor
        except PredictorError:
            continue
        part = pred.parts_.get(modality) if pred.method == "fusion" else pred
        if part is not None:
            return part.W_
    return None


def set_prompts(sets: dict, genres: list[str], index=None) -> tuple[dict, dict]:
    """({modality: prompt matrix (dim, n_genres)}, {modality: fingerprint}): the genre prompts
    embedded by the text side of each set's own encoder (zero-shot), taken from a zero-shot
    head of ``index`` that already holds them, else embedded once."""
    out, fingerprints = {}, {}
    for modality, s in sets.items():
        mods = tuple(s.describe.get("modalities", ()))
        require_text_side(type("SetEncoder", (), {"name": s.encoder, "modalities": mods})(), s.key)
        fingerprints[modality] = prompts_fingerprint(s, genres, modality)
        W = _saved_prompts(index, fingerprints[modality], modality) if index is not None else None
        if W is None:
            W = prompt_matrix(load_set_encoder(s), genres, modality)
        else:
            logger.info("%s: genre prompts taken from a saved zero-shot head", s.key)
        out[modality] = W
    return out, fingerprints


def item_rows(index, ids) -> np.ndarray:
    """Item positions of ``ids`` (sorted); PredictorError names an id the index lacks."""
    pos = {item_id: i for i, item_id in enumerate(index.ids)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise PredictorError(
            f"{len(missing)} id(s) are not in index {index.path} (first: {missing[0]}); "
            "give ids of this index's items."
        )
    return np.array(sorted({pos[i] for i in ids}), dtype=np.int64)


def train_head(
    index,
    spec: HeadSpec,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    name: str | None = None,
    ids: list[str] | None = None,
    validation_ids: list[str] | None = None,
    save: bool = True,
    wait: float | None = 0,
) -> Head:
    """Fit ``spec`` on the index's labelled items (only ``ids`` when given) and save it as head
    ``name`` (default ``spec.name``). ``validation_ids``: hold these items out for the thresholds
    instead of ``spec.folds`` folds. Saving takes the index's writer lock (``wait`` seconds for
    another writer; None: for ever). Zero-shot also works on an index without labels (default
    thresholds then)."""
    sets = head_sets(index, spec.modality, image_encoder, text_encoder)
    name = name or spec.name
    if not NAME_RE.match(name):
        raise PredictorError(
            f"Head name {name!r} is not allowed;",
            "use letters, digits, '.', '_' or '-' (max 64).",
            param="name",
        )
    genres, prompts, fingerprints = _spec_genres(index, spec, sets)
    X, Y, rows = set_input(index.labels, sets)
    keep = np.ones(len(rows), dtype=bool)
    if ids is not None:
        keep &= np.isin(rows, item_rows(index, ids))
    labelled = keep & (Y.sum(axis=1) > 0) if len(Y) and Y.shape[1] else np.zeros(len(X), bool)
    dims = _dims(spec, sets)
    t0 = time.perf_counter()
    if not labelled.any():
        if spec.method != "zeroshot":
            raise PredictorError(
                f"Index {index.path} has no genre labels, so {spec.method} cannot be trained;",
                "only the zeroshot method works without labels (or re-index a catalog with "
                "genres).",
                param="method",
            )
        predictor = spec.estimator(len(X), dims, prompts).fit(X[keep], None, classes=genres)
        metrics, n_items, refit = {}, int(keep.sum()), False
    else:
        X, Y, rows = X[labelled], Y[labelled], rows[labelled]
        if len(X) < 10:
            raise PredictorError(
                f"Only {len(X)} labelled items with {spec.modality} embeddings; need at least 10 "
                "to train and validate."
            )
        validation = None
        if validation_ids:
            validation = np.flatnonzero(np.isin(rows, item_rows(index, validation_ids)))
        tuned = spec.fit(X, Y, genres, dims=dims, prompts=prompts, validation=validation)
        predictor, metrics = tuned.estimator_, tuned.validation_
        n_items, refit = len(X), bool(tuned.refit)
    info = {
        "name": name,
        "method": spec.method,
        "modality": spec.modality,
        "fusion": spec.fusion,
        "encoders": {m: set_info(s) for m, s in sets.items()},
        **({"prompts": fingerprints} if fingerprints else {}),
        "genres": list(genres),
        "metrics": metrics,
        "seed": spec.seed,
        "params": json_safe(spec.params),
        "threshold": spec.threshold,
        "metric": spec.metric,
        "folds": None if validation_ids else spec.folds,
        "n_items": int(n_items),
        "refit_on_all_items": refit,
        "fit_seconds": round(time.perf_counter() - t0, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    head = Head(name, predictor, spec.modality, info["encoders"], list(genres), metrics, info)
    head.saved = save
    if save:
        path = save_head(index.path, predictor, info, wait=wait)
        logger.info("saved head %s to %s", name, path)
    return head


def _spec_genres(index, spec: HeadSpec, sets: dict) -> tuple[list[str], dict | None, dict | None]:
    """(genre vocabulary, zero-shot prompt matrices, their fingerprints) of a head of ``spec``."""
    genres = index.genres or (list(DEFAULT_GENRES) if spec.method == "zeroshot" else [])
    if spec.method != "zeroshot":
        return genres, None, None
    prompts, fingerprints = set_prompts(sets, genres, index)
    return genres, prompts, fingerprints


def _dims(spec: HeadSpec, sets: dict):
    return tuple(s.dim for s in sets.values()) if spec.modality == "both" else None


def heldout_scores(
    index,
    spec: HeadSpec,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Out-of-fold probabilities of ``spec`` for every labelled item: each item scored by a model
    fitted, as :func:`train_head` fits, on the other folds only (``spec.folds`` folds, 5 when the
    spec holds out one validation part instead).

    ``labels``: bool (n_items, n_genres) to fit on instead of the index's own (to ask what a head
    would say of other labels). Returns (item rows int64 (m,), probabilities float32 (m, g),
    labels bool (m, g), genre names, predictions bool (m, g) at the thresholds tuned on those
    probabilities); nothing is saved.
    """
    sets = head_sets(index, spec.modality, image_encoder, text_encoder)
    genres, prompts, _ = _spec_genres(index, spec, sets)
    if labels is None:
        labels = index.labels
    labels = np.asarray(labels)
    if labels.shape != (len(index.ids), len(genres)):
        raise PredictorError(
            f"labels must have one row per item and one column per genre, "
            f"{(len(index.ids), len(genres))}; got {labels.shape}."
        )
    X, Y, rows = set_input(labels, sets)
    labelled = Y.sum(axis=1) > 0 if Y.shape[1] else np.zeros(len(X), bool)
    if labelled.sum() < 10:
        raise PredictorError(
            f"Only {int(labelled.sum())} labelled items with {spec.modality} embeddings in "
            f"{index.path}; held-out scores need at least 10 (re-index a catalog with genres)."
        )
    X, Y, rows = X[labelled], Y[labelled], rows[labelled]
    if spec.folds is None:
        spec = replace(spec, folds=DEFAULT_FOLDS)
    tuned = spec.fit(X, Y, genres, dims=_dims(spec, sets), prompts=prompts, refit=False)
    held, P = tuned.heldout_
    predicted = apply_thresholds(P, tuned.thresholds_, tuned.at_least_one_).astype(bool)
    return rows[held], P, Y[held].astype(bool), list(genres), predicted
