"""Which saved head answers a query: the one named, else the best that fits the inputs given,
else a zero-shot head where the index's encoders allow it, calibrated on the index's labels and
saved (when the caller may write) so the next query loads it instead of fitting it again."""

from __future__ import annotations

import logging

from embedgenre.errors import IndexStoreError, PredictorError, WriteError
from embedgenre.heads.saved import Head, check_compatible, list_heads, load_head, save_head
from embedgenre.heads.training import train_head
from embedgenre.predictors.spec import HeadSpec

logger = logging.getLogger(__name__)


def choose_head(
    index, has_poster: bool, has_plot: bool, name: str | None = None, save_zeroshot: bool = False
) -> Head:
    """The named head, else the best saved head (validation micro-F1) that can score the inputs,
    preferring heads that use every input given; else a zero-shot head when possible, saved as
    ``zeroshot-<modality>`` with ``save_zeroshot`` (skipped, not waited for, while another
    process writes the index)."""
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
    return head
