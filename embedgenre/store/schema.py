"""The index format: typed records for the manifest, validated once on open, and migrations.

``manifest.json`` is the commit point of an index directory. It is read into a :class:`Manifest`
by :func:`parse_manifest`, which checks every field's type and range and that every path it
names lies inside the index, so the rest of the code never meets a malformed value. An older
format version is brought up to :data:`FORMAT_VERSION` by the step-by-step :data:`MIGRATIONS`
(in memory; the next write stores the new version).

Version history:

1. the first format: heads in ``heads/<name>/`` and the skip list in ``skipped.json``, neither
   named by the manifest.
2. heads and the skip list are generation files named by the manifest (``heads``,
   ``skipped_file``); poster sets may carry thumbnails.
3. ``genres`` is a kept vocabulary (:mod:`embedgenre.vocabulary`): known genres keep their
   position, new ones are appended, and a genre no movie carries stays with a count of 0 in
   ``genre_counts``, which names every genre of ``genres`` and nothing else. Earlier versions
   sorted genres by frequency on every run; their order at migration is the one kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from embedgenre.errors import IndexStoreError
from embedgenre.names import SET_MODALITIES, encoder_name_path
from embedgenre.store.paths import NAME_RE, inside
from embedgenre.vocabulary import Vocabulary

FORMAT = "embedgenre-index"
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
VECTOR_DTYPES = ("float32", "float16")  # how a set's vectors.npy may be stored


class _Fields:
    """Typed access to one JSON object of the manifest, with messages naming the field."""

    def __init__(self, doc: Any, where: str, root: Path):
        if not isinstance(doc, dict):
            raise _bad(root, where, "a JSON object", doc)
        self.doc, self.where, self.root = doc, where, root

    def get(self, key: str, kind: type | tuple, default: Any = ...) -> Any:
        if key not in self.doc or self.doc[key] is None:
            if default is ...:
                raise IndexStoreError(
                    f"index {self.root}: {self.where} has no {key!r}; the manifest is damaged. "
                    "Rebuild the index with `embedgenre index CATALOG --out NEW_DIR`."
                )
            return default
        value = self.doc[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad(self.root, f"{self.where}.{key}", "an integer", value)
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise _bad(self.root, f"{self.where}.{key}", f"a {names}", value)
        return value

    def count(self, key: str, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if value < 0:
            raise _bad(self.root, f"{self.where}.{key}", "a count >= 0", value)
        return value

    def strings(self, key: str, default: Any = ...) -> list[str]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise _bad(self.root, f"{self.where}.{key}", "a list of strings", value)
        return list(value)


def _check_encoder_name(root: Path, where: str, name: str) -> str:
    """``name`` when it is a registry name; an index that names its encoder by a path (a file
    anywhere on this machine, which opening the index would load) is refused."""
    path = encoder_name_path(name)
    if path is not None:
        shown = repr(name) if len(name) <= 120 else repr(name[:117] + "...")
        raise IndexStoreError(
            f"index {root}: {where} is {shown}, which names a weights file or folder "
            f"({path[:80]!r}) instead of a registry encoder; an index is refused when it would "
            "load a file outside itself. Fix: import the weights once (`embedgenre models import "
            "PATH --as FAMILY:MODEL@NAME`) and build the index with that name."
        )
    return name


def _bad(root: Path, where: str, expected: str, value: Any) -> IndexStoreError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return IndexStoreError(
        f"index {root}: {where} should be {expected}, found {shown}; the manifest is damaged. "
        "Rebuild the index with `embedgenre index CATALOG --out NEW_DIR`."
    )


@dataclass(frozen=True)
class EncoderInfo:
    """What built an embedding set: registry name, dimension, space; the rest as ``extra``
    (family, preprocessing, package versions) exactly as the encoder described itself."""

    name: str
    dim: int
    space: str
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, doc: Any, where: str, root: Path) -> EncoderInfo:
        f = _Fields(doc, where, root)
        name = f.get("name", str)
        dim = f.get("dim", int)
        if not 1 <= dim <= 1 << 16:
            raise _bad(root, f"{where}.dim", "an integer from 1 to 65536", dim)
        space = f.get("space", str, name)
        extra = {k: v for k, v in doc.items() if k not in ("name", "dim", "space")}
        return cls(name, dim, space, extra)

    @classmethod
    def of(cls, describe: dict) -> EncoderInfo:
        """From an encoder's ``describe()`` dict."""
        return cls.parse(describe, "encoder description", Path("."))

    def to_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim, "space": self.space, **self.extra}


def _checked_encoder(doc: Any, where: str, root: Path) -> EncoderInfo:
    info = EncoderInfo.parse(doc, where, root)
    _check_encoder_name(root, f"{where}.name", info.name)
    return info


@dataclass(frozen=True)
class SetEntry:
    """One embedding set (modality x encoder) of a generation: where its files are."""

    key: str
    modality: str
    dir: str
    encoder: EncoderInfo
    count: int
    faiss: dict = field(default_factory=lambda: {"kind": "flat"})
    updated: str | None = None
    thumbnails: bool = False
    dtype: str = "float32"  # of vectors.npy: float32, or float16 (half the bytes)

    @classmethod
    def parse(cls, doc: Any, i: int, root: Path) -> SetEntry:
        where = f"sets[{i}]"
        f = _Fields(doc, where, root)
        modality = f.get("modality", str)
        if modality not in SET_MODALITIES:
            raise _bad(root, f"{where}.modality", f"one of {SET_MODALITIES}", modality)
        rel = f.get("dir", str)
        inside(root, rel, f"{where}.dir")
        faiss = f.get("faiss", dict, {"kind": "flat"})
        if not isinstance(faiss.get("kind", "flat"), str):
            raise _bad(root, f"{where}.faiss.kind", "a string", faiss.get("kind"))
        if f.get("dtype", str, "float32") not in VECTOR_DTYPES:
            raise _bad(root, f"{where}.dtype", f"one of {VECTOR_DTYPES}", doc.get("dtype"))
        return cls(
            key=f.get("key", str),
            modality=modality,
            dir=rel,
            encoder=_checked_encoder(doc.get("encoder"), f"{where}.encoder", root),
            count=f.count("count"),
            faiss=faiss,
            updated=f.get("updated", str, None),
            thumbnails=f.get("thumbnails", bool, False),
            dtype=f.get("dtype", str, "float32"),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict()
        return d


@dataclass(frozen=True)
class HeadRecord:
    """A saved head of a generation: its name (the only way to ask for it) and its folder."""

    name: str
    dir: str
    method: str | None = None
    modality: str | None = None
    saved: str | None = None

    @classmethod
    def parse(cls, doc: Any, i: int, root: Path) -> HeadRecord:
        where = f"heads[{i}]"
        f = _Fields(doc, where, root)
        name = f.get("name", str)
        if not NAME_RE.match(name):
            raise _bad(root, f"{where}.name", "a plain name", name)
        rel = f.get("dir", str)
        inside(root, rel, f"{where}.dir")
        return cls(
            name,
            rel,
            f.get("method", str, None),
            f.get("modality", str, None),
            f.get("saved", str, None),
        )


@dataclass(frozen=True)
class Manifest:
    """One committed generation of an index directory."""

    generation: int
    items_file: str
    genres: list[str]
    genre_counts: dict[str, int]
    counts: dict[str, int]
    sets: list[SetEntry] = field(default_factory=list)
    heads: list[HeadRecord] = field(default_factory=list)
    skipped_file: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)
    encoders: list[dict] = field(default_factory=list)  # asked for: [{modality, name}]
    complete: bool = False
    created: str | None = None
    updated: str | None = None
    embedgenre_version: str | None = None
    catalog: dict = field(default_factory=dict)
    items_digest: str | None = None  # of the item table's content: an unchanged run writes nothing

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sets"] = [s.to_dict() for s in self.sets]
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d}

    def evolve(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    @property
    def vocabulary(self) -> Vocabulary:
        """The kept genre vocabulary with each genre's count (0: retired)."""
        return Vocabulary(tuple(self.genres), dict(self.genre_counts))

    def set_by_key(self, key: str) -> SetEntry | None:
        return next((s for s in self.sets if s.key == key), None)

    def head(self, name: str) -> HeadRecord | None:
        return next((h for h in self.heads if h.name == name), None)

    def files(self) -> set[str]:
        """Every path (relative to the index) that this generation names."""
        named = {self.items_file, *(s.dir for s in self.sets), *(h.dir for h in self.heads)}
        if self.skipped_file:
            named.add(self.skipped_file)
        return named


def _v1_to_v2(doc: dict, root: Path) -> dict:
    """Version 1 kept heads in ``heads/<name>/`` and skips in ``skipped.json``, unnamed."""
    doc = dict(doc)
    heads = []
    heads_dir = root / "heads"
    if heads_dir.is_dir() and not heads_dir.is_symlink():
        for d in sorted(heads_dir.iterdir()):
            if NAME_RE.match(d.name) and d.is_dir() and (d / "head.json").is_file():
                heads.append({"name": d.name, "dir": f"heads/{d.name}"})
    doc["heads"] = heads
    doc["skipped_file"] = "skipped.json" if (root / "skipped.json").is_file() else None
    doc["format_version"] = 2
    return doc


def _v2_to_v3(doc: dict, root: Path) -> dict:
    """Version 2 re-sorted ``genres`` by frequency on every run: the order it has now is kept,
    with a count for each genre."""
    doc = dict(doc)
    counts = doc.get("genre_counts")
    counts = counts if isinstance(counts, dict) else {}
    genres = doc.get("genres")
    if isinstance(genres, list):
        doc["genre_counts"] = {g: counts.get(g, 0) for g in genres if isinstance(g, str)}
    doc["format_version"] = 3
    return doc


MIGRATIONS: dict[int, Callable[[dict, Path], dict]] = {1: _v1_to_v2, 2: _v2_to_v3}


def parse_manifest(doc: Any, root: Path) -> Manifest:
    """Validate a manifest JSON document (any supported version) into a :class:`Manifest`."""
    f = _Fields(_migrated(doc, root), "manifest", root)
    genres, genre_counts, counts = _parse_genres(f, root)
    items_file, skipped_file = _parse_files(f, root)
    sets = [SetEntry.parse(e, i, root) for i, e in enumerate(f.get("sets", list, []))]
    keys = [s.key for s in sets]
    if len(set(keys)) != len(keys):
        raise _bad(root, "manifest.sets", "embedding sets with distinct keys", keys)
    heads = [HeadRecord.parse(e, i, root) for i, e in enumerate(f.get("heads", list, []))]
    defaults, encoders = _parse_encoders(f, root)
    return Manifest(
        generation=f.count("generation", 0),
        items_file=items_file,
        genres=genres,
        genre_counts=genre_counts,
        counts=counts,
        sets=sets,
        heads=heads,
        skipped_file=skipped_file,
        defaults=defaults,
        encoders=encoders,
        complete=f.get("complete", bool, False),
        created=f.get("created", str, None),
        updated=f.get("updated", str, None),
        embedgenre_version=f.get("embedgenre_version", str, None),
        catalog=f.get("catalog", dict, {}),
        items_digest=f.get("items_digest", str, None),
    )


def _migrated(doc: Any, root: Path) -> dict:
    """The manifest document brought to :data:`FORMAT_VERSION` through :data:`MIGRATIONS`."""
    f = _Fields(doc, "manifest", root)
    if doc.get("format") != FORMAT:
        raise IndexStoreError(
            f"{root / MANIFEST} is not an embedgenre index manifest (format {doc.get('format')!r})."
        )
    version = f.get("format_version", int)
    if version > FORMAT_VERSION:
        raise IndexStoreError(
            f"index {root} has format version {version}, newer than this embedgenre reads "
            f"({FORMAT_VERSION}); upgrade embedgenre (`pip install -U embedgenre`)."
        )
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise IndexStoreError(
                f"index {root} has format version {version}, which this embedgenre cannot "
                "migrate; rebuild it with `embedgenre index CATALOG --out NEW_DIR`."
            )
        doc = MIGRATIONS[version](doc, root)
        version = doc["format_version"]
    return doc


def _parse_genres(f: _Fields, root: Path) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """(genres in their kept order, movies per genre, the item counts by name)."""
    genres = f.strings("genres")
    if len(set(genres)) != len(genres):
        raise _bad(root, "manifest.genres", "a list of distinct genre names", genres)
    genre_counts = f.get("genre_counts", dict, {})
    if set(genre_counts) != set(genres) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in genre_counts.values()
    ):
        raise _bad(
            root, "manifest.genre_counts", "a count >= 0 for each genre of 'genres'", genre_counts
        )
    counts = f.get("counts", dict, {})
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        raise _bad(root, "manifest.counts", "name -> integer count", counts)
    return genres, {g: genre_counts[g] for g in genres}, dict(counts)


def _parse_files(f: _Fields, root: Path) -> tuple[str, str | None]:
    """(the item table, the skip list or None): paths inside the index."""
    items_file = f.get("items_file", str)
    inside(root, items_file, "manifest.items_file")
    skipped_file = f.get("skipped_file", str, None)
    if skipped_file is not None:
        inside(root, skipped_file, "manifest.skipped_file")
    return items_file, skipped_file


def _parse_encoders(f: _Fields, root: Path) -> tuple[dict[str, str], list[dict]]:
    """(the default set key per modality, the encoders asked for as [{modality, name}])."""
    defaults = f.get("defaults", dict, {})
    if not all(isinstance(v, str) for v in defaults.values()):
        raise _bad(root, "manifest.defaults", "modality -> set key", defaults)
    encoders = f.get("encoders", list, [])
    if not all(
        isinstance(e, dict)
        and isinstance(e.get("modality"), str)
        and isinstance(e.get("name"), str)
        for e in encoders
    ):
        raise _bad(root, "manifest.encoders", "a list of {modality, name}", encoders)
    for i, e in enumerate(encoders):
        _check_encoder_name(root, f"encoders[{i}].name", e["name"])
    return dict(defaults), [{"modality": e["modality"], "name": e["name"]} for e in encoders]
