"""Fetch one poster image over HTTP(S): a deadline for the whole answer, a size cap, redirects
only to http(s), and bytes kept only if Pillow decodes them as an image.

:func:`fetch_image` makes one attempt and raises :class:`FetchError` with a reason code (the
``reasons`` of a download report) and whether a retry may help; retrying, writing and reporting
are :mod:`embedgenre.download`'s.
"""

from __future__ import annotations

import functools
import io
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from http.client import HTTPException

from embedgenre.images import _OPEN_LOCK

MAX_BYTES = 20 * 1024 * 1024  # a poster larger than this is refused ("too_large")
USER_AGENT = "embedgenre-poster-download/0.1"
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_RETRY_STATUS = {408, 429}
_SCHEMES = ("http", "https")


class FetchError(Exception):
    """One attempt failed: ``reason`` (a report code), ``detail`` and whether to retry."""

    def __init__(self, reason: str, detail: str, retry: bool):
        super().__init__(detail)
        self.reason, self.detail, self.retry = reason, detail, retry


def fetch_image(url: str, timeout: float = 10.0) -> tuple[bytes, str]:
    """One attempt: the answer's bytes and the image extension, or FetchError with a reason.

    ``timeout`` bounds the whole attempt (connecting, redirects, headers and every read): when it
    runs out the connection is shut and the attempt fails with reason "timeout".
    """
    if not url:
        raise FetchError("no_url", "no poster URL in the row", retry=False)
    if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
        raise FetchError("bad_url", f"not an http(s) URL: {url[:200]}", retry=False)
    deadline = _Deadline(timeout)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    late = FetchError("timeout", f"answer not complete after {timeout:g}s", retry=True)
    try:
        with deadline, _opener(deadline).open(request, timeout=timeout) as answer:
            ctype = (answer.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            length = answer.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_BYTES:
                raise FetchError("too_large", f"Content-Length {length} bytes", retry=False)
            chunks, size = [], 0
            while True:
                chunk = answer.read1(64 * 1024)  # returns what one read of the socket gives
                if deadline.expired:
                    raise late
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BYTES:
                    raise FetchError("too_large", f"more than {MAX_BYTES} bytes", retry=False)
                chunks.append(chunk)
    except FetchError:
        raise
    except urllib.error.HTTPError as e:
        retry = e.code >= 500 or e.code in _RETRY_STATUS
        raise FetchError(f"http_{e.code}", f"HTTP {e.code} {e.reason}", retry=retry) from None
    except urllib.error.URLError as e:
        if deadline.expired or isinstance(e.reason, TimeoutError):
            raise late from None
        raise FetchError("connection", f"{e.reason}", retry=True) from None
    except TimeoutError:
        raise late from None
    except (ConnectionError, HTTPException, OSError) as e:
        if deadline.expired:
            raise late from None
        raise FetchError("connection", f"{type(e).__name__}: {e}", retry=True) from None
    except ValueError as e:  # urllib's "unknown url type" and friends
        raise FetchError("bad_url", str(e), retry=False) from None
    data = b"".join(chunks)
    if not (
        ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")
    ):
        raise FetchError("not_image", f"content type {ctype or '(none)'!r}", retry=False)
    return data, decoded_ext(data)


# ---------------------------------------------------------------------------------------------


class _Deadline:
    """A wall-clock limit on one attempt: when it passes, the connection's socket is shut down,
    which ends any read or write blocked on it (a server sending a byte a second included)."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has already)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed, or not connected yet


def _watched_connection(http_class, deadline: _Deadline, host, **kwargs):
    """An http.client connection whose sockets are shut when ``deadline`` passes."""
    conn = http_class(host, **kwargs)
    connect = conn.connect

    def create_connection(*args, **kw):
        sock = socket.create_connection(*args, **kw)
        deadline.watch(sock)
        return sock

    def watched_connect():
        connect()
        deadline.watch(conn.sock)  # for https: the TLS socket that wraps the one above

    conn._create_connection = create_connection
    conn.connect = watched_connect
    return conn


class _Watched:
    """Mixin for urllib's HTTP(S) handlers: every connection they open is watched by a deadline."""

    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def do_open(self, http_class, req, **kwargs):
        return super().do_open(
            functools.partial(_watched_connection, http_class, self._deadline), req, **kwargs
        )


class _HTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    pass


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an http(s) URL; any other scheme fails as "bad_redirect"."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        if target:
            self._check(urllib.parse.urljoin(req.full_url, target), code, fp)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self._check(newurl, code, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    @staticmethod
    def _check(url: str, code: int, fp) -> None:
        if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
            fp.close()
            raise FetchError(
                "bad_redirect", f"HTTP {code} redirect to {url[:200]}: not http(s)", retry=False
            )


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener for http and https only (no ftp:, file: or data:), bounded by ``deadline``."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _HTTPHandler(deadline),
        _HTTPSHandler(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def decoded_ext(data: bytes) -> str:
    """Extension for ``data`` if Pillow fully decodes it, else FetchError with the reason.

    The pixel count in the header is checked before decoding: an image over Pillow's
    ``MAX_IMAGE_PIXELS`` (which ``embedgenre.images`` refuses) fails as "too_many_pixels".
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        # Image.open parses the header only; its bomb warning becomes an error here. Changing
        # warning filters is process-wide, so this shares embedgenre.images' lock.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise FetchError("too_many_pixels", str(e)[:300], retry=False) from None
    except Exception as e:  # Pillow raises many types for bad bytes
        raise FetchError("undecodable", f"{type(e).__name__}: {e}"[:300], retry=False) from None
    with img:
        width, height = img.size
        if limit and width * height > limit:
            raise FetchError(
                "too_many_pixels",
                f"{width}x{height} = {width * height:,} pixels, over the {limit:,} limit",
                retry=False,
            )
        fmt = img.format or ""
        try:
            img.load()
        except Exception as e:
            raise FetchError("undecodable", f"{type(e).__name__}: {e}"[:300], retry=False) from None
    return _FORMAT_EXT.get(fmt, "." + fmt.lower() if fmt else ".img")
