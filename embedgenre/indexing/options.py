"""What an index run is asked to do (:class:`IndexOptions`) and what it reports
(:class:`IndexSummary`, one :class:`SetSummary` per embedding set)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from embedgenre import ann, encoders
from embedgenre.encoders.base import Encoder
from embedgenre.engines import Engine, LocalEngine, Skip
from embedgenre.errors import EmbedgenreError, IndexStoreError
from embedgenre.store.schema import VECTOR_DTYPES

DEFAULT_CHUNK = 256
DEFAULT_BATCH = 32  # posters per batch on CPU; on a GPU (batch_size None) from its free memory


@dataclass(frozen=True)
class IndexOptions:
    """How to build or update an index; checked once, when made, before anything is read.

    ``image_encoders`` / ``text_encoders``: registry names; None means the encoders the index
    already holds, or the best available offline defaults for a new index. ``add``: an existing
    index may be given encoders it does not hold yet. ``device``, ``backend``, ``precision``:
    how the encoders run (see :func:`~embedgenre.encoders.create_encoder`). ``batch_size``: items
    per encoder call (None: 32, or on a GPU as many as half its free memory holds); ``chunk_size``: rows per ``.partial/`` chunk (what a killed run can lose).
    ``strict``: the first unreadable poster is fatal. ``encoder_factory``: name -> encoder, in
    place of the registry. ``wait``: seconds to wait for another writer (0: refuse at once, None:
    for ever). ``engine``: what encodes. ``faiss_kind`` / ``index_memory`` (bytes or ``"4GB"``):
    each changed set's FAISS index. ``vector_dtype``: "float32", "float16", or None to keep
    what each set has. ``drop_unused_genres``: remove kept genres no item carries any more.
    """

    image_encoders: tuple[str, ...] | None = None
    text_encoders: tuple[str, ...] | None = None
    add: bool = False
    device: str = "cpu"
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    chunk_size: int = DEFAULT_CHUNK
    strict: bool = False
    progress: bool = False
    encoder_factory: Callable[[str], Encoder] | None = None
    wait: float | None = 0
    engine: Engine = field(default_factory=LocalEngine)
    faiss_kind: str = "auto"
    index_memory: int | str | None = None
    vector_dtype: str | None = None
    drop_unused_genres: bool = False
    memory: int = field(init=False)  # index_memory in bytes

    def __post_init__(self) -> None:
        for name in ("image_encoders", "text_encoders"):
            names = getattr(self, name)
            if names is not None and not isinstance(names, tuple):
                object.__setattr__(self, name, tuple(names))
        object.__setattr__(self, "memory", ann.parse_memory(self.index_memory))
        ann.check_kind(self.faiss_kind)  # a bad kind fails before anything is encoded
        if self.vector_dtype is not None and self.vector_dtype not in VECTOR_DTYPES:
            raise IndexStoreError(
                f"unknown vector dtype '{self.vector_dtype}': expected one of "
                f"{', '.join(VECTOR_DTYPES)}"
            )

    def make_encoder(self, name: str) -> Encoder:
        """The encoder registered as ``name``, built the way these options ask."""
        if self.encoder_factory is not None:
            return self.encoder_factory(name)
        chosen = {
            k: v
            for k, v in (("backend", self.backend), ("precision", self.precision))
            if v not in ("auto", "fp32")
        }
        return encoders.create_encoder(name, device=self.device, **chosen)

    def check_weights(self) -> None:
        """Encoders named for this run whose weights are not on this machine are created now,
        before any folder or file is written: offline that fails at once with where it looked
        (the hub is not tried); with the hub allowed it downloads them, or fails here, not
        half-way. Nothing to check with an ``encoder_factory``."""
        if self.encoder_factory is not None:
            return
        for param, names in (
            ("image_encoders", self.image_encoders),
            ("text_encoders", self.text_encoders),
        ):
            for name in names or ():
                try:
                    if not encoders.encoder_spec(name).available:
                        self.make_encoder(name)
                except EmbedgenreError as e:
                    e.param = e.param or param
                    raise


@dataclass
class SetSummary:
    key: str
    modality: str
    encoder: str
    dim: int
    count: int = 0  # rows in the set after this run
    encoded: int = 0  # newly encoded in this run
    resumed: int = 0  # taken from an interrupted run's chunks
    reused: int = 0  # unchanged rows carried over
    skipped: int = 0  # the catalog's posters left out of this set: missing or unreadable
    seconds: float = 0.0
    faiss: dict = field(default_factory=dict)


@dataclass
class IndexSummary:
    path: str
    items: int
    with_plot: int
    with_poster: int
    genres: dict[str, int]  # the index's vocabulary in its kept order, with counts (0: retired)
    sets: list[SetSummary]
    skipped: list[Skip]  # by item id
    seconds: float
    problems: list[str] = field(default_factory=list)
    up_to_date: bool = False  # the index already held exactly this: nothing was written
    new_genres: list[str] = field(default_factory=list)  # appended to the vocabulary by this run
    retired_genres: list[str] = field(default_factory=list)  # kept, though no item carries them
    dropped_genres: list[str] = field(default_factory=list)  # retired genres removed on request

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["skipped"] = [s.to_dict() for s in self.skipped]
        return doc
