"""Labels that look wrong or incomplete, found from held-out predictions: :func:`audit`.

Every labelled movie is scored by a model that never saw it: the out-of-fold probabilities the
threshold protocol makes (:func:`embedgenre.heads.training.heldout_scores`, the fit ``train``
makes for the chosen head's spec). Each genre is then judged against its own typical scores, as
confident learning does, since a rare genre's probabilities live far lower than a common one's:

- ``member[g]``: the mean held-out score of the movies labelled ``g``;
- ``other[g]``: the mean held-out score of the movies not labelled ``g``.

A labelled genre scoring at or below ``other[g]`` looks **wrong** (the model rates the movie no
more ``g`` than a typical movie without it); a missing genre scoring at or above ``member[g]``
looks **missing**. Each issue's strength is its distance past that threshold in log-odds.

Movies with at least one issue are listed worst label set first, by a label quality score as
cleanlab ranks multi-label issues: per genre the self-confidence of the given label (the score
if labelled, one minus it if not), aggregated by an exponential moving average over the genres
from the most to the least confident, so the worst few weigh most (:func:`label_quality`). (On
the shared posters this ranks planted wrong label sets about twice as well as summing the issue
strengths, which favours movies with many weak issues; benchmarks/audit.py.) The movie's nearest
neighbours (:mod:`embedgenre.retrieval`) that side with an issue (neighbours without a genre
called wrong, with a genre called missing) are shown as evidence beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedgenre.errors import PredictorError, RetrievalError
from embedgenre.heads.saved import check_compatible, list_heads
from embedgenre.heads.training import heldout_scores
from embedgenre.predictors.spec import HeadSpec
from embedgenre.predictors.tuning import DEFAULT_FOLDS
from embedgenre.retrieval import Retriever

logger = logging.getLogger(__name__)

DEFAULT_K = 50
DEFAULT_NEIGHBOURS = 10
DEFAULT_SPEC = HeadSpec("linear", "poster")
_EPS = 1e-4  # probabilities are clipped to [eps, 1 - eps] before log-odds
QUALITY_ALPHA = 0.5


@dataclass
class Issue:
    """One genre of a movie that looks wrong (labelled) or missing (not labelled)."""

    genre: str
    kind: str  # "wrong" or "missing"
    score: float  # the held-out probability
    threshold: float  # the genre's typical score it is judged against
    evidence: float  # log-odds past the threshold
    neighbours: int = 0  # how many of the movie's neighbours side with the issue


@dataclass
class Finding:
    rank: int
    id: str
    title: str | None
    year: int | None
    labelled: list[str]
    predicted: list[str]  # genres the head's tuned thresholds give on the held-out scores
    evidence: float  # the sum of the issues' strengths
    quality: float  # label quality (low: likely wrong); findings are listed by it
    issues: list[Issue]
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # those that side with an issue


@dataclass
class AuditResult:
    """What :func:`audit` found. ``thresholds``: {genre: {"member": .., "other": ..}}."""

    index: str
    head: dict[str, Any]
    n_items: int
    n_flagged: int
    thresholds: dict[str, dict[str, float]]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "head": dict(self.head),
            "n_items": self.n_items,
            "n_flagged": self.n_flagged,
            "thresholds": {g: dict(t) for g, t in self.thresholds.items()},
            "findings": [
                {
                    "rank": f.rank,
                    "id": f.id,
                    "title": f.title,
                    "year": f.year,
                    "labelled": list(f.labelled),
                    "predicted": list(f.predicted),
                    "evidence": f.evidence,
                    "quality": f.quality,
                    "issues": [vars(i).copy() for i in f.issues],
                    "neighbours": [dict(n) for n in f.neighbours],
                }
                for f in self.findings
            ],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------ the scoring


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def class_thresholds(P: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(member (g,), other (g,)): per genre, the mean held-out score of the rows labelled with
    it and of the rows not labelled with it (NaN where a side has no row)."""
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    n_in = Y.sum(axis=0)
    n_out = len(Y) - n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        member = np.where(n_in > 0, (P * Y).sum(axis=0) / n_in, np.nan)
        other = np.where(n_out > 0, (P * ~Y).sum(axis=0) / n_out, np.nan)
    return member, other


def issue_evidence(P: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wrong (m, g), missing (m, g), movie evidence (m,)).

    ``wrong[i, g]`` > 0: row i is labelled g and scores at or below ``other[g]``, by that many
    log-odds; ``missing[i, g]`` > 0: not labelled g and scores at or above ``member[g]``. A genre
    whose members score no higher than the rest on average tells nothing and is never judged.
    The movie evidence is the sum of both over its genres.
    """
    Y = np.asarray(Y, dtype=bool)
    member, other = class_thresholds(P, Y)
    usable = np.isfinite(member) & np.isfinite(other) & (member > other)
    L = _logit(P)
    lm = _logit(np.nan_to_num(member, nan=0.5))
    lo = _logit(np.nan_to_num(other, nan=0.5))
    # "at or below" / "at or above": a small positive floor marks the ties as issues too
    wrong = np.where(Y & usable & (L <= lo), lo - L + _EPS, 0.0)
    missing = np.where(~Y & usable & (L >= lm), L - lm + _EPS, 0.0)
    return wrong, missing, wrong.sum(axis=1) + missing.sum(axis=1)


def label_quality(P: np.ndarray, Y: np.ndarray, alpha: float = QUALITY_ALPHA) -> np.ndarray:
    """float (m,) in [0, 1]: how well each row's given labels agree with its held-out scores
    (low: likely wrong). Per genre the self-confidence ``P`` where labelled, ``1 - P`` where not;
    sorted from the most to the least confident and folded by an exponential moving average
    with weight ``alpha`` on each newer (less confident) genre."""
    Y = np.asarray(Y, dtype=bool)
    S = np.where(Y, P, 1.0 - np.asarray(P, dtype=np.float64))
    S = -np.sort(-S, axis=1)
    out = S[:, 0].copy()
    for t in range(1, S.shape[1]):
        out = alpha * S[:, t] + (1.0 - alpha) * out
    return out


# ------------------------------------------------------------------------------ the head


def audit_spec(index, head: str | None = None) -> tuple[HeadSpec, dict[str, Any]]:
    """(the spec whose held-out scores judge the labels, a description of it).

    ``head``: a saved head's name: its method, modality, params and encoders. None: the saved
    head with the best validation micro-F1 that fits the index, else a linear poster head.
    """
    docs = list_heads(index)
    if head is not None:
        doc = next((d for d in docs if d.get("name") == head), None)
        if doc is None:
            names = ", ".join(d["name"] for d in docs) or "none"
            raise PredictorError(
                f"No head named {head!r} in {index.path} (it has: {names}); give one of those "
                "or leave the head out to use the best saved head."
            )
        check_compatible(index, doc)
    else:
        fitting = []
        for d in docs:
            try:
                check_compatible(index, d)
            except PredictorError as e:
                logger.info("not using head %s: %s", d.get("name"), e)
                continue
            fitting.append((d.get("metrics", {}).get("micro_f1", -1.0), d["name"], d))
        doc = max(fitting, key=lambda t: t[:2])[2] if fitting else None
    if doc is None:
        spec = DEFAULT_SPEC
        return spec, {"name": None, "spec": spec.name, "encoders": {}, "folds": DEFAULT_FOLDS}
    spec = HeadSpec(
        doc["method"],
        doc["modality"],
        doc.get("fusion"),
        params=dict(doc.get("params") or {}),
        seed=int(doc.get("seed") or 0),
        folds=doc.get("folds") or DEFAULT_FOLDS,
        threshold=doc.get("threshold") or "per_genre",
        metric=doc.get("metric") or "micro_f1",
    )
    encoders = {m: e["encoder"] for m, e in doc.get("encoders", {}).items()}
    return spec, {"name": doc["name"], "spec": spec.name, "encoders": encoders, "folds": spec.folds}


# ------------------------------------------------------------------------------ the audit


def audit(
    index,
    head: str | None = None,
    k: int = DEFAULT_K,
    neighbours: int = DEFAULT_NEIGHBOURS,
    labels: np.ndarray | None = None,
    retriever: Retriever | None = None,
) -> AuditResult:
    """The ``k`` movies of ``index`` whose labels look most wrong or incomplete (module doc).

    ``head``: the saved head whose spec scores the movies (see :func:`audit_spec`);
    ``neighbours``: how many nearest movies to ask for evidence (0: none); ``labels``: bool
    (n_items, n_genres) to audit instead of the index's own labels.
    """
    if k < 1:
        raise PredictorError(f"k must be at least 1, got {k}.")
    if neighbours < 0:
        raise PredictorError(f"neighbours must be 0 or more, got {neighbours}.")
    spec, described = audit_spec(index, head)
    enc = described["encoders"]
    rows, P, Y, genres, predicted = heldout_scores(
        index, spec, enc.get("poster"), enc.get("plot"), labels=labels
    )
    wrong, missing, evidence = issue_evidence(P, Y)
    member, other = class_thresholds(P, Y)
    quality = label_quality(P, Y)
    flagged = np.flatnonzero(evidence > 0)
    order = flagged[np.lexsort((rows[flagged], quality[flagged]))][:k]
    notes = [
        f"held-out scores of {spec.name} over {described['folds']} folds: each movie scored by "
        "a model fitted on the other folds",
        "a labelled genre scoring at or below the genre's mean score among movies without it "
        "looks wrong; a missing genre scoring at or above its mean among movies with it looks "
        "missing",
        "listed by label quality (cleanlab's multi-label score), lowest first",
    ]
    if described["name"] is None:
        notes.append(f"no saved head fits this index: judged by a {spec.name} head")
    labels_of = labels if labels is not None else None
    findings = []
    for r, i in enumerate(order, start=1):
        row = int(rows[i])
        item = index.items[row]
        issues = [
            Issue(genres[j], "wrong", float(P[i, j]), float(other[j]), float(wrong[i, j]))
            for j in np.flatnonzero(wrong[i])
        ] + [
            Issue(genres[j], "missing", float(P[i, j]), float(member[j]), float(missing[i, j]))
            for j in np.flatnonzero(missing[i])
        ]
        issues.sort(key=lambda x: -x.evidence)
        labelled = [genres[j] for j in np.flatnonzero(Y[i])]
        findings.append(
            Finding(
                rank=r,
                id=item["id"],
                title=item.get("title"),
                year=item.get("year"),
                labelled=labelled,
                predicted=[genres[j] for j in np.flatnonzero(predicted[i])],
                evidence=float(evidence[i]),
                quality=float(quality[i]),
                issues=issues,
            )
        )
    if neighbours and findings:
        retriever = retriever or Retriever(index, thumbnails=False)
        for f in findings:
            _neighbour_evidence(retriever, f, neighbours, spec.modality, labels_of, index)
    thresholds = {
        g: {"member": float(member[j]), "other": float(other[j])}
        for j, g in enumerate(genres)
        if np.isfinite(member[j]) and np.isfinite(other[j])
    }
    return AuditResult(
        index=str(index.path),
        head=described,
        n_items=len(rows),
        n_flagged=int(len(flagged)),
        thresholds=thresholds,
        findings=findings,
        notes=notes,
    )


def _neighbour_evidence(retriever, finding: Finding, n: int, modality: str, labels, index):
    """Fill ``finding.neighbours`` with the nearest movies that side with one of its issues and
    count, per issue, how many of the ``n`` nearest side with it."""
    by = "poster" if modality == "poster" else ("plot" if modality == "plot" else "both")
    try:
        result = retriever.similar(item_id=finding.id, k=n, by=by)
    except RetrievalError:  # e.g. a movie without a plot asked by plot
        try:
            result = retriever.similar(item_id=finding.id, k=n, by="poster")
        except RetrievalError as e:
            logger.info("no neighbours for %s: %s", finding.id, e)
            return
    col = {g: j for j, g in enumerate(index.genres)}
    for nb in result.neighbours:
        if labels is not None:
            row = index.row_of[nb.id]
            nb_genres = {g for g, j in col.items() if labels[row, j]}
        else:
            nb_genres = set(nb.genres)
        sides = []
        for issue in finding.issues:
            agrees = (
                (issue.genre not in nb_genres)
                if issue.kind == "wrong"
                else (issue.genre in nb_genres)
            )
            if agrees:
                issue.neighbours += 1
                sides.append(issue.genre)
        if sides:
            finding.neighbours.append(
                {
                    "id": nb.id,
                    "title": nb.title,
                    "year": nb.year,
                    "genres": sorted(nb_genres, key=col.get),
                    "score": nb.score,
                    "supports": sides,
                }
            )


__all__ = [
    "AuditResult",
    "Finding",
    "Issue",
    "audit",
    "audit_spec",
    "class_thresholds",
    "issue_evidence",
    "label_quality",
]
