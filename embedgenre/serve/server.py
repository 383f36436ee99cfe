"""The uvicorn server of ``embedgenre serve``, with limits on each request's head.

uvicorn's httptools protocol reads a request line and headers of any size for any time: a client
sending a 128 MB header, or one byte a second, holds memory and the event loop. Here a head
(request line and headers) is refused with 431 once it passes ``max_header_bytes``, and a
connection whose head has not arrived ``header_timeout_s`` after its first byte (or after the
connection opened) gets 408 and is closed. Both happen before the app sees the request.
"""

from __future__ import annotations

import json
import logging

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from embedgenre.serve.config import ServeConfig

logger = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class HeadLimitedProtocol(HttpToolsProtocol):
    """HTTP/1.1 over httptools with a byte cap and a deadline on each request's head."""

    max_header_bytes: int = 0
    header_timeout_s: float = 0.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._in_head, self._head_bytes, self._head_timer = True, 0, None
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # the head is fed at most up to the cap, so the parser never holds more than that
        while data and not self.transport.is_closing():
            if not self._in_head:
                super().data_received(data)
                return
            self._arm_head_timer()
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse(
                    431,
                    f"The request headers are over the {self.max_header_bytes // 1024} kB limit.",
                    "Send shorter headers (a cookie or token of a few kB at most).",
                )
                return
            part, data = data[:room], data[room:]
            self._head_bytes += len(part)
            super().data_received(part)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what arrives next is the next request's head

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(
                408,
                f"The request headers did not arrive within {self.header_timeout_s:g} s.",
                "Send the request line and headers at once.",
            )

    def _refuse(self, status: int, error: str, fix: str) -> None:
        """Answer ``status`` (unless a response is being written) and close the connection."""
        self._disarm_head_timer()
        client = ":".join(map(str, self.client)) if self.client else "unknown client"
        logger.warning("%s: %d %s", client, status, error)
        busy = self.cycle is not None and not self.cycle.response_complete
        if self._head_bytes and not busy:
            body = json.dumps({"error": error, "fix": fix}).encode()
            head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
            head += [b"%s: %s\r\n" % kv for kv in self.server_state.default_headers]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        self.transport.close()


def head_limited_protocol(config: ServeConfig) -> type[HeadLimitedProtocol]:
    """The protocol class for ``config``'s head limits (uvicorn takes a class, not an object)."""
    limits = {
        "max_header_bytes": config.max_header_bytes,
        "header_timeout_s": config.header_timeout_s,
    }
    return type("HeadLimitedProtocol", (HeadLimitedProtocol,), limits)


def uvicorn_config(app, config: ServeConfig, **options) -> uvicorn.Config:
    """How ``embedgenre serve`` runs ``app`` on uvicorn: ``config``'s address and head limits,
    no server header; ``options`` go to :class:`uvicorn.Config` as they are."""
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=head_limited_protocol(config),
        server_header=False,
        **options,
    )
