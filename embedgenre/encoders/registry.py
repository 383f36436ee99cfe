"""The encoder registry: family prefix -> Family, names like ``cnn:efficientnet-lite0``.

A family module declares itself with the ``@register`` class decorator. A Family knows its
well-known names (listed by ``embedgenre models``), answers ``spec(name)`` cheaply (is the model
on this machine, and where: WITHOUT loading it) and builds encoders with ``create(...)``.

    list_encoders("clip:*")                         # -> [EncoderSpec, ...]
    create_encoder("st:all-MiniLM-L6-v2")           # -> Encoder
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from embedgenre.encoders.base import CatalogFittedEncoder, Encoder
from embedgenre.encoders.cpu import check_precision, precision_units
from embedgenre.encoders.devices import resolve_device
from embedgenre.encoders.weights import Located, imported_names, read_state_dict, write_import
from embedgenre.errors import BadInputError, EmbedgenreError, UnknownEncoderError
from embedgenre.names import encoder_name_path

logger = logging.getLogger(__name__)

# Family modules, imported on first use (they import torch & co. only inside functions).
_FAMILY_MODULES = (
    "embedgenre.encoders.cnn",
    "embedgenre.encoders.text",
    "embedgenre.encoders.hybrid",
    "embedgenre.encoders.clip",
    "embedgenre.encoders.timm_models",
)
_FAMILIES: dict[str, Family] = {}


@dataclass(frozen=True)
class EncoderSpec:
    """What the registry knows about a name without loading the model."""

    name: str
    family: str
    modalities: tuple[str, ...]
    dim: int | None  # None when it cannot be known without loading the model
    available: bool  # weights are on this machine now
    source: str | None  # "local file" | "cache" | "hf cache" | "packaged" | None
    location: str | None  # where the weights were found
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return d


class Family:
    """One encoder family (one module). Subclasses set ``prefix`` and implement the methods."""

    prefix: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    example: str = ""
    # the encoder class, when the family's encoders are fitted on the catalog they embed
    fitted_class: type[CatalogFittedEncoder] | None = None

    def known_names(self) -> list[str]:
        """Names listed by ``list_encoders`` (more names may be valid, e.g. any open_clip tag)."""
        return []

    def spec(self, name: str) -> EncoderSpec:
        """Availability of ``name`` without loading it; UnknownEncoderError if invalid."""
        raise NotImplementedError

    def create(self, name: str, device: str, backend: str, **options: Any) -> Encoder:
        raise NotImplementedError

    def spec_of(
        self, name: str, located: Located | None, dim: int | None, description: str
    ) -> EncoderSpec:
        """The spec of ``name`` in this family, whose weights the search found at ``located``
        (None: not on this machine)."""
        return EncoderSpec(
            name=name,
            family=self.prefix,
            modalities=self.modalities,
            dim=dim,
            available=located is not None,
            source=located.source if located else None,
            location=str(located.path) if located else None,
            description=description,
        )

    def preprocessing(self, name: str) -> dict | None:
        """The image transform ``name`` uses (as ``Encoder.describe`` records it), when it is
        known without loading the model; None otherwise."""
        return None

    def check_import(self, name: str, path: Path, config: Path | None) -> dict[str, Path | bytes]:
        """Check that ``path`` holds weights for ``name`` (raise EmbedgenreError otherwise);
        return extra files to store beside it (destination name -> source path)."""
        if config is not None:
            raise BadInputError(
                f"a model config is only used by clip encoders, not '{name}'.", param="config"
            )
        try:
            read_state_dict(path)
        except Exception as e:
            raise EmbedgenreError(
                f"{path} is not a readable torch or safetensors state dict ({str(e)[:200]})"
            ) from e
        return {}


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: add a Family to the registry under its ``prefix``."""
    if not cls.prefix:
        raise ValueError(f"{cls.__name__} needs a prefix")
    _FAMILIES[cls.prefix] = cls()
    return cls


def families() -> dict[str, Family]:
    for module in _FAMILY_MODULES:
        importlib.import_module(module)

    def rank(fam: Family) -> int:  # listed in _FAMILY_MODULES order, whatever was imported first
        module = type(fam).__module__
        return _FAMILY_MODULES.index(module) if module in _FAMILY_MODULES else len(_FAMILY_MODULES)

    return dict(sorted(_FAMILIES.items(), key=lambda kv: rank(kv[1])))


def _split(name: str) -> tuple[Family, str]:
    fams = families()
    if not isinstance(name, str) or ":" not in name:
        raise UnknownEncoderError(_unknown_message(name, fams))
    prefix = name.split(":", 1)[0]
    if prefix not in fams:
        raise UnknownEncoderError(_unknown_message(name, fams))
    return fams[prefix], name


def fitted_class(name: str) -> type[CatalogFittedEncoder] | None:
    """The class of encoder ``name`` when it is fitted on the catalog it embeds (its fit stored
    in the embedding set: :class:`~embedgenre.encoders.base.CatalogFittedEncoder`), else None
    (also for a name no family knows: an encoder a caller built itself keeps no fit here)."""
    try:
        return _split(name)[0].fitted_class
    except UnknownEncoderError:
        return None


def _unknown_message(name: object, fams: dict[str, Family]) -> str:
    options = "; ".join(f"{p}: ({f.description}, e.g. {f.example})" for p, f in fams.items())
    return (
        f"unknown encoder '{name}': names are '<family>:<model>' with family one of "
        f"{', '.join(fams)} — {options}. Run `embedgenre models` to list them"
    )


def list_encoders(pattern: str = "*") -> list[EncoderSpec]:
    """Specs of the well-known and imported encoders whose name matches the glob ``pattern``."""
    fams = families()
    names: list[str] = []
    for fam in fams.values():
        names.extend(fam.known_names())
    for name in imported_names():
        if name.split(":", 1)[0] in fams and name not in names:
            names.append(name)
    out = []
    for name in names:
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatch(name.lower(), pattern.lower()):
            try:
                out.append(encoder_spec(name))
            except UnknownEncoderError as e:  # e.g. an imported arch whose config went missing
                logger.warning("skipping %s: %s", name, e)
    return out


def encoder_spec(name: str) -> EncoderSpec:
    """Availability and shape of one encoder name, without loading it."""
    fam, name = _split(name)
    return fam.spec(name)


def preprocessing(name: str) -> dict | None:
    """The image transform an encoder name uses, without loading it (None when its family cannot
    say, or the name is not a registry name)."""
    try:
        fam, name = _split(name)
        return fam.preprocessing(name)
    except UnknownEncoderError:
        return None


def create_encoder(
    name: str, device: str = "cpu", backend: str = "auto", **options: Any
) -> Encoder:
    """Build the encoder registered as ``name``.

    device: "cpu" or "cuda[:N]" (fp16 on GPU; an error if absent). backend: "auto", "torch" or
    "onnx"; on CPU "auto" is the faster of ONNX Runtime and torch for this encoder as measured
    once on this CPU (cached), or ONNX Runtime for ``purpose="query"`` (loads fastest).
    options: ``threads`` (ONNX Runtime intra-op threads); ``purpose`` "bulk" (default) or
    "query"; ``precision`` "fp32" (default), "bf16" or "int8" (image towers, only on CPUs with
    the matrix units; checked against fp32). Raises UnknownEncoderError or
    WeightsNotFoundError with the fix.
    """
    fam, name = _split(name)
    device = resolve_device(device)
    if "precision" in options:
        options["precision"] = check_precision(options["precision"], device)
    enc = fam.create(name, device=device, backend=backend, **options)
    if options.get("precision", "fp32") != "fp32" and "image" not in enc.modalities:
        logger.warning(
            "precision %s applies to image towers; %s encodes texts in fp32",
            options["precision"],
            enc.name,
        )
    logger.info(
        "encoder %s: dim %s, backend %s (%s) on %s, weights from %s (%s)",
        enc.name,
        "set when fitted" if isinstance(enc, CatalogFittedEncoder) and not enc.fitted else enc.dim,
        enc.backend,
        (enc.backend_choice or {}).get("by", "asked"),
        enc.device,
        enc.weights_source,
        enc.weights_path,
    )
    return enc


def import_weights(path: str | Path, name: str, config: str | Path | None = None) -> EncoderSpec:
    """Copy a downloaded checkpoint (file, or model directory for st:) into the cache as ``name``.

    The weights are checked first (a state dict that loads into the named architecture, where
    the family can tell), the copy is atomic, and afterwards ``create_encoder(name)`` finds them.
    config: an open_clip config JSON for a CLIP architecture open_clip does not ship.
    Returns the spec of ``name`` (now available, source "cache").
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise EmbedgenreError(f"cannot import {path}: no such file or directory")
    if "@" in name and any(c in name.split("@", 1)[1] for c in "/\\"):
        raise EmbedgenreError(
            f"import name '{name}' contains a path; choose a plain name like clip:ViT-B-32@mytag"
        )
    fam, name = _split(name)
    extra = fam.check_import(name, path, Path(config).expanduser() if config else None)
    write_import(name, path, extra)
    spec = fam.spec(name)
    if not spec.available:
        raise EmbedgenreError(f"imported {path} as '{name}' but the resolver cannot find it")
    logger.debug("imported %s as %s (%s)", path, name, spec.location)
    return spec


def _names_local_file(name: str) -> bool:
    """True when ``name`` finds its weights at a path written in it (e.g. a sentence model folder
    relative to the working directory), not by name."""
    family, name = _split(name)
    locate = getattr(family, "locate", None)
    if locate is None:
        return False
    located, _ = locate(name)
    return located is not None and located.source == "local file"


def load_set_encoder(emb, device: str = "cpu") -> Encoder:
    """The encoder that built embedding set ``emb`` (a ``GenreIndex`` set), ready to embed
    queries in the same space: an encoder fitted on the catalog gets the fit stored in the set.
    Made for queries: on CPU it takes the backend that loads fastest (a cached CLIP export loads
    without torch or open_clip). A set encoded at int8 is queried at int8 where this CPU has the
    units (the same quantised model: a ViT-B-32 poster in 18.9 ms instead of 54.6 on an AMX CPU,
    and the query lands where the stored vectors are); other sets, bf16 ones included, are queried at fp32, which loads
    without torch and is within the cosine the index checked of them."""
    if encoder_name_path(emb.encoder) is not None or _names_local_file(emb.encoder):
        raise EmbedgenreError(
            f"embedding set {emb.key} names its encoder by a file path ({emb.encoder!r}); "
            "queries are encoded only with registry encoders, never with a file an index names"
        )
    options: dict[str, Any] = {"purpose": "query"}
    if (emb.describe or {}).get("precision") == "int8" and device == "cpu":
        if precision_units("int8"):
            options["precision"] = "int8"
        else:
            logger.info(
                "%s was encoded at int8; this CPU has no int8 units: queries in fp32", emb.key
            )
    encoder = create_encoder(emb.encoder, device=device, **options)
    if isinstance(encoder, CatalogFittedEncoder):
        encoder.load_state(emb.directory)
    return encoder
