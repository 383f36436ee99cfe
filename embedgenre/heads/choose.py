"""Which saved head answers a query: the one named, else the best that fits the inputs given,
else a zero-shot head where the index's encoders allow it, calibrated on the index's labels and
saved (when the caller may write) so the next query loads it instead of fitting it again.

A long-running reader (the HTTP service) passes a :class:`HeadCache`, which keeps heads across
the index generations it follows, so a new generation never fits a head again."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from embedgenre.errors import IndexStoreError, PredictorError, WriteError
from embedgenre.heads.saved import (
    Head,
    bind_head,
    check_compatible,
    list_heads,
    load_head,
    save_head,
)
from embedgenre.heads.training import train_head
from embedgenre.predictors.spec import HeadSpec

logger = logging.getLogger(__name__)


class HeadCache:
    """Heads kept across the generations of one index by a reader that follows them.

    A saved head is read once per folder: a generation whose manifest names the same folder gets
    the same fitted predictor, matched by genre name to that generation's vocabulary. A zero-shot
    head fitted because no saved head fitted (and not saved: the reader may not write) answers
    the next generations too, as long as their embedding sets still fit it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._read: dict[str, tuple[object, dict]] = {}  # head folder -> (predictor, head.json)
        self._fitted: dict[str, Head] = {}  # modality -> unsaved zero-shot head

    def load(self, index, name: str) -> Head:
        """Saved head ``name`` of ``index`` (as :func:`load_head`), read once per folder."""
        try:
            directory = index.head_dir(name)
        except IndexStoreError:
            directory = None
        if directory is None:
            return load_head(index, name)  # raises, naming the heads there are
        with self._lock:
            read = self._read.get(str(directory))
        if read is not None:
            return bind_head(index, *read)
        head = load_head(index, name)
        with self._lock:
            self._read[str(directory)] = (head.predictor, head.info)
        return head

    def fitted(self, index, modality: str) -> Head | None:
        """The unsaved zero-shot head kept for ``modality``, if it fits ``index``."""
        with self._lock:
            kept = self._fitted.get(modality)
        if kept is None:
            return None
        try:
            head = bind_head(index, kept.predictor, kept.info, saved=False)
        except PredictorError as e:
            logger.info("not reusing zero-shot head %s: %s", kept.name, e)
            return None
        return replace(head, name=kept.name)

    def keep_fitted(self, modality: str, head: Head) -> None:
        with self._lock:
            self._fitted[modality] = head

    def retain(self, indexes) -> None:
        """Forget saved heads that none of these indexes (generations) name."""
        named = set()
        for ix in indexes:
            for rec in ix.heads:
                try:
                    named.add(str(ix.head_dir(rec.name)))
                except IndexStoreError:
                    continue
        with self._lock:
            for key in [k for k in self._read if k not in named]:
                del self._read[key]


def choose_head(
    index,
    has_poster: bool,
    has_plot: bool,
    name: str | None = None,
    save_zeroshot: bool = False,
    cache: HeadCache | None = None,
) -> Head:
    """The named head, else the best saved head (validation micro-F1) that can score the inputs,
    preferring heads that use every input given and know every genre of the index; else a
    zero-shot head when possible, saved as ``zeroshot-<modality>`` with ``save_zeroshot``
    (skipped, not waited for, while another process writes the index). ``cache``: heads kept
    from earlier generations of the index (read or fitted once)."""
    load = cache.load if cache is not None else load_head
    if name:
        head = load(index, name)
        needed = {"poster"} if has_poster else set()
        needed |= {"plot"} if has_plot and not has_poster else set()
        if not needed <= set(head.encoders):
            raise PredictorError(
                f"Head {name!r} uses {', '.join(head.encoders)} embeddings; it cannot score "
                f"{' and '.join(sorted(needed))} input.",
                f"Choose another head or give the {' and '.join(head.encoders)} input.",
                param="head",
            )
        return head
    given = {m for m, ok in (("poster", has_poster), ("plot", has_plot)) if ok}
    ranked = []
    for doc in list_heads(index):
        mods = set(doc.get("encoders", {}))
        if not mods & given or (has_poster and "poster" not in mods):
            continue
        try:
            covered = check_compatible(index, doc)
        except PredictorError as e:
            logger.info("not using head %s: %s", doc.get("name"), e)
            continue
        covers = given <= mods
        f1 = doc.get("metrics", {}).get("micro_f1", -1.0)
        ranked.append((covers, -len(covered.unscored), f1, doc["name"]))
    if ranked:
        best = max(ranked)
        logger.info("using head %s (validation micro-F1 %.3f)", best[3], best[2])
        return load(index, best[3])
    modality = "both" if len(given) == 2 else next(iter(given))
    kept = cache.fitted(index, modality) if cache is not None else None
    if kept is not None:
        logger.info("using zero-shot head %s fitted for an earlier generation", kept.name)
        return kept
    logger.info("no saved head fits the inputs; trying zero-shot on %s", modality)
    try:
        head = train_head(index, HeadSpec("zeroshot", modality), save=False)
    except PredictorError as e:
        raise PredictorError(
            f"No trained head in {index.path} can score {' + '.join(sorted(given))} input, and "
            f"zero-shot is not possible: {e} Train one with "
            f"`embedgenre train {index.path} --method linear --modality {modality}`."
        ) from e
    if save_zeroshot:
        try:
            save_head(index.path, head.predictor, head.info, wait=0)
            head.saved = True
            logger.info("saved zero-shot head %s: later queries load it", head.name)
            return head
        except (IndexStoreError, WriteError) as e:  # locked by a writer, or read-only
            logger.info("zero-shot head not saved (%s); it is fitted again next time", e)
    head.saved = False
    head.name = f"zeroshot-{modality} (unsaved)"
    if cache is not None:
        cache.keep_fitted(modality, head)
    return head
