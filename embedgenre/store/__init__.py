"""The index directory: its typed format, reading it, and writing it one writer at a time.

- :mod:`~embedgenre.store.schema`: the manifest as typed records, format version, migrations;
- :mod:`~embedgenre.store.reader`: :class:`GenreIndex`, one validated generation to read;
- :mod:`~embedgenre.store.writer`: :class:`IndexWriter`, the lock, generations, commit and
  garbage collection;
- :mod:`~embedgenre.store.atomic`: atomic, fsync'd file writes used by everything that writes;
- :mod:`~embedgenre.store.paths`: every path an index names stays inside it.
"""

from embedgenre.store.reader import EmbeddingSet, GenreIndex, describe_index, now_iso, set_key
from embedgenre.store.schema import FORMAT, FORMAT_VERSION, MANIFEST, Manifest

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "EmbeddingSet",
    "GenreIndex",
    "Manifest",
    "describe_index",
    "now_iso",
    "set_key",
]
