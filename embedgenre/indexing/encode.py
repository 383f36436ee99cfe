"""Getting an encoder ready for one embedding set of an index run: checked against what the set
already holds, recorded in ``.partial/`` (and, for an encoder fitted on the catalog, given its
fit) before the engine encodes anything."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from embedgenre import encoders
from embedgenre.encoders.base import CatalogFittedEncoder, Encoder
from embedgenre.encoders.devices import check_on_posters
from embedgenre.encoders.registry import fitted_class
from embedgenre.engines import EncodeTask
from embedgenre.errors import IndexMismatchError, IndexStoreError
from embedgenre.indexing.options import DEFAULT_BATCH, IndexOptions
from embedgenre.indexing.plan import ENCODER_FILE, Contents, SetPlan
from embedgenre.store import atomic
from embedgenre.store.schema import SetEntry
from embedgenre.store.writer import IndexWriter

logger = logging.getLogger(__name__)


def encode_task(plan: SetPlan, contents: Contents, options: IndexOptions, state_dir: Path):
    """The engine's share of ``plan``: the ids, hashes and sources of the items to encode."""
    items, hashes = contents.items, contents.hashes(plan.modality)
    return EncodeTask(
        key=plan.key,
        modality=plan.modality,
        encoder_name=plan.encoder_name,
        ids=[items[p].id for p in plan.todo],
        hashes=[hashes[p] for p in plan.todo],
        sources=[
            str(items[p].poster) if plan.modality == "poster" else items[p].plot_text
            for p in plan.todo
        ],
        batch_size=options.batch_size or DEFAULT_BATCH,
        batch_from_memory=options.batch_size is None,
        chunk_size=options.chunk_size,
        progress=options.progress,
        state_dir=state_dir,
        options={"backend": options.backend, "precision": options.precision},
    )


def check_compatible(old_entry: SetEntry | None, encoder: Encoder, out: Path) -> None:
    """Refuse to mix embeddings of a changed encoder into an existing set."""
    if old_entry is None:
        return
    was = old_entry.encoder.to_dict()
    now = encoder.describe()
    for field_name in ("dim", "space"):
        if was.get(field_name) != now.get(field_name):
            raise IndexMismatchError(
                f"encoder {encoder.name!r} now gives {field_name} {now.get(field_name)!r} but "
                f"the index at {out} was built with {field_name} {was.get(field_name)!r}; its "
                "embeddings cannot be mixed.",
                "Fix: build a new index in a new folder.",
                param="out",
            )


def check_precision(
    encoder: Encoder, name: str, posters: Sequence[str], options: IndexOptions
) -> None:
    """Refuse a reduced precision that moves the catalog's own posters' embeddings more than the
    fp32 guard allows (the encoder passed it on probe images when it was built)."""
    precision = options.precision
    reference = encoders.create_encoder(name, device=options.device)
    worst = check_on_posters(encoder, reference, posters, f"precision '{precision}' on {name}")
    if worst is not None:
        logger.info(
            "precision %s on %s: min cosine to fp32 %.5f on posters", precision, name, worst
        )


def remember_encoder(writer: IndexWriter, plan: SetPlan, encoder: Encoder) -> None:
    """Record in ``.partial/`` which encoder the chunks come from, so a run killed after its
    last chunk commits them without loading the model again."""
    path = writer.partial_dir(plan.key) / ENCODER_FILE
    desc = encoder.describe()
    if plan.resumed and plan.partial_encoder is not None:
        was = plan.partial_encoder.to_dict()
        if (was["dim"], was["space"]) != (desc.get("dim"), desc.get("space")):
            raise IndexStoreError(
                f"{writer.partial_dir(plan.key)} holds chunks of {was['name']} with "
                f"dim {was['dim']}, space {was['space']!r}, but the encoder now gives dim "
                f"{desc.get('dim')}, space {desc.get('space')!r}; delete "
                f"{writer.path / '.partial'} and run the same command again"
            )
    atomic.write_json(path, desc)


def state_source(writer: IndexWriter, plan: SetPlan) -> Path | None:
    """Where the fit of a catalog-fitted encoder for ``plan`` is stored: the interrupted run's
    ``.partial/`` (if it left chunks), else the committed set (if rows are reused)."""
    fitted = fitted_class(plan.encoder_name)
    partial = writer.partial_dir(plan.key)
    if fitted is None:
        return None
    if plan.resumed and fitted.has_state(partial):
        return partial
    if plan.old_entry is not None and fitted.has_state(writer.path / plan.old_entry.dir):
        return writer.path / plan.old_entry.dir
    return None


def prepare_fitted(
    encoder: CatalogFittedEncoder, writer: IndexWriter, plan: SetPlan, contents: Contents
) -> None:
    """Give an encoder fitted on the catalog (``hybrid:``) its fit before anything is encoded.

    Rows kept from before were embedded with the stored fit, so it is loaded again and new rows
    share their space; with nothing kept, it is fitted on the catalog's plots. Either way the fit
    is saved in ``.partial/`` first, so a killed run resumes with the same one.
    """
    source = state_source(writer, plan) if (plan.reused or plan.resumed) else None
    if source is not None:
        encoder.load_state(source)
        logger.info("%s: using the lexical fit stored in %s", plan.key, source)
    else:
        if plan.resumed:  # chunks of a run whose fit is lost cannot be matched: encode again
            raise IndexStoreError(
                f"{writer.partial_dir(plan.key)} holds encoded plots without the fit they were "
                f"made with; delete {writer.path / '.partial'} and run the same command again"
            )
        encoder.fit([it.plot_text for it in contents.items if it.plot_text])
        plan.old_entry = None  # nothing is kept, so a new fit mixes with nothing
    encoder.save_state(writer.partial_dir(plan.key))


def keep_fit(writer: IndexWriter, plan: SetPlan, encoder: Encoder | None, directory: Path):
    """Store the fit of a catalog-fitted encoder beside the set's vectors (queries need it)."""
    if encoder is not None:
        if isinstance(encoder, CatalogFittedEncoder):
            encoder.save_state(directory)
        return
    source = state_source(writer, plan)
    if source is not None:
        fitted_class(plan.encoder_name).copy_state(source, directory)
