"""Build or update an index directory from a catalog: hash, encode what changed, commit.

The pipeline is reader -> encoder -> writer, one embedding set (modality x encoder) at a time,
each step a method of :class:`~embedgenre.indexing.run.IndexRun`:

1. plan (:mod:`~embedgenre.indexing.plan`): every item's content is hashed (poster bytes, plot
   text; a poster is first checked to be a regular image file under the size cap, so nothing
   else is ever read); items whose (id, hash) is already in the set, or in the ``.partial/``
   chunks an interrupted run left behind, are kept; the rest are to encode;
2. encode (:mod:`~embedgenre.indexing.encode`, engines in :mod:`embedgenre.engines`): in chunks
   (vectors and poster thumbnails), each saved atomically as soon as it is done (a killed run
   loses at most one chunk);
3. write (:mod:`~embedgenre.indexing.write`): each changed set in item order to a new
   generation folder, with its FAISS index;
4. commit: one manifest publishes the run (:class:`~embedgenre.store.writer.IndexWriter`, which
   holds the writer lock).

An encoder is only loaded when something needs encoding, and an unchanged catalog writes
nothing. Posters that cannot be read are skipped (:class:`~embedgenre.engines.Skip`), listed in
the skip list and the summary, and not retried while their bytes stay the same (``strict=True``
makes the first one fatal). :class:`IndexOptions` holds what a run is asked, checked once.
"""

from __future__ import annotations

from embedgenre.engines import Skip
from embedgenre.indexing.options import DEFAULT_CHUNK, IndexOptions, IndexSummary, SetSummary
from embedgenre.indexing.run import IndexRun, build_index

__all__ = [
    "DEFAULT_CHUNK",
    "IndexOptions",
    "IndexRun",
    "IndexSummary",
    "SetSummary",
    "Skip",
    "build_index",
]
