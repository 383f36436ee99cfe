"""Settings of the HTTP service and the checks made before it binds a socket."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from embedgenre.errors import EmbedgenreError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a request body larger than this is refused unread
MAX_UPLOAD_PIXELS = 40_000_000  # width x height read from the header, before decoding
MAX_REQUEST_PIXELS = 48_000_000  # pixels decoded for one request, all its posters together
MAX_DECODE_BYTES = 64 * 2**20  # bytes of pixels decoding one poster may hold
DECODE_MEMORY_BYTES = 256 * 2**20  # bytes of pixels being decoded at once, all requests
MAX_TOKEN_FILE_BYTES = 4096
MAX_HEADER_BYTES = 64 * 1024  # request line and headers together, counted as they arrive
HEADER_TIMEOUT_S = 10.0  # from a request's first byte (or the connection) to its last header
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host values always trusted (any port)


class ServeError(EmbedgenreError):
    """The service cannot start as asked (an exposed bind without a token, a bad token file)."""


@dataclass
class ServeConfig:
    """How ``embedgenre serve`` runs. Times in seconds, sizes in bytes.

    ``max_batch`` / ``max_wait_ms``: a micro-batch closes at this many inputs or this long after
    its first one; ``max_queue``: inputs waiting per encoder before requests get 503.
    ``allowed_hosts``: names a request's ``Host`` header may carry besides the loopback names
    and a non-wildcard bind address (``"*"`` trusts any); ``max_header_bytes`` and
    ``header_timeout_s`` bound a request's head (request line and headers).
    ``max_pixels``: per poster, from its header; ``max_request_pixels``: all posters of a request
    as they will be decoded (a JPEG at its reduced scale); ``max_decode_bytes``: per poster, the
    pixels its decoding holds (refused before decoding); ``decode_memory_bytes``: decodes of all
    requests wait so that no more than this is held at once.
    """

    index_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    insecure_no_token: bool = False
    head: str | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    max_request_pixels: int = MAX_REQUEST_PIXELS
    max_decode_bytes: int = MAX_DECODE_BYTES
    decode_memory_bytes: int = DECODE_MEMORY_BYTES
    max_posters: int = 8
    max_k: int = 100
    request_timeout_s: float = 30.0
    max_header_bytes: int = MAX_HEADER_BYTES
    header_timeout_s: float = HEADER_TIMEOUT_S
    max_batch: int = 32
    max_wait_ms: float = 4.0
    max_queue: int = 512
    reload_interval_s: float = 0.5
    json_logs: bool = False

    def __post_init__(self) -> None:
        self.index_dir = Path(self.index_dir)
        self.cors_origins = tuple(self.cors_origins)
        self.allowed_hosts = tuple(self.allowed_hosts)

    def trusted_hosts(self) -> frozenset[str] | None:
        """Lower-case host names (no port) a request may name in ``Host``; None trusts any."""
        if "*" in self.allowed_hosts:
            return None
        names = {*LOOPBACK_HOSTS, *(host_name(h) for h in self.allowed_hosts)}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(host_name(self.host))
        return frozenset(names)


def host_name(value: str) -> str:
    """The name part of a ``Host`` value, lower-case: ``"[::1]:8000"`` and ``"::1"`` ->
    ``"[::1]"``, ``"Example.org:80"`` -> ``"example.org"``."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):  # a bare IPv6 address
        return f"[{value}]"
    if value.startswith("["):
        return value.partition("]")[0] + "]"
    return value.partition(":")[0]


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure_no_token: bool) -> None:
    """Refuse to expose the service beyond this machine without a token (or an explicit opt-out)."""
    if is_loopback(host) or token or insecure_no_token:
        return
    raise ServeError(
        f"--host {host} is reachable from other machines, and no token was given. Give "
        "--token-file FILE (a file holding a secret that clients send as 'Authorization: Bearer "
        "SECRET'), or --insecure-no-token to serve without one, or bind --host 127.0.0.1."
    )


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); a regular, small, non-empty file."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ServeError(f"--token-file {path}: cannot be read ({e.strerror or e}).") from e
    if not stat.S_ISREG(st.st_mode):
        raise ServeError(f"--token-file {path}: not a regular file; give a file holding the token.")
    if st.st_size > MAX_TOKEN_FILE_BYTES:
        raise ServeError(
            f"--token-file {path}: {st.st_size} bytes; a token file holds one line (at most "
            f"{MAX_TOKEN_FILE_BYTES} bytes)."
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ServeError(f"--token-file {path}: cannot be read as UTF-8 text ({e}).") from e
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ServeError(
            f"--token-file {path}: the token must be one word of at least 16 characters; "
            "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`."
        )
    return token
