"""What every request passes through before any route runs: request id, trusted ``Host``,
bearer token, body size cap (from Content-Length before anything is read, and counted while
reading), a time limit, then a log line and metrics once it is answered. A plain ASGI
middleware.

A request refused here is answered from its headers alone: nothing awaits its body, and an
answer sent before the body was read to its end closes the connection, so the server does not
go on reading a body nobody asked for.

Each request that runs gets a :class:`~embedgenre.serve.limits.RequestWork` (the current one in
its context), cancelled when the time limit passes or the client disconnects, so the threads
working for it stop at their next check instead of finishing work nobody will read."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass

from embedgenre.serve.config import LOOPBACK_HOSTS, ServeConfig, host_name
from embedgenre.serve.limits import RequestWork, reset_current_work, set_current_work
from embedgenre.serve.metrics import Metrics

access_log = logging.getLogger("embedgenre.serve.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PROTECTED_PREFIXES = ("/v1/", "/metrics")


class BodyTooLarge(Exception):
    """The request body grew past the cap while it was being read."""


def _problem_bytes(error: str, fix: str) -> bytes:
    return json.dumps({"error": error, "fix": fix}).encode()


@dataclass(frozen=True)
class Refusal:
    """An answer given instead of running the app: status, metrics reason, what and the fix."""

    status: int
    reason: str
    error: str
    fix: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


class _Exchange:
    """One request's side of the wire: tags its answer with the request id, closes the
    connection when the answer starts before the body was read to its end, and cancels the
    request's ``work`` when the client goes away before its answer."""

    def __init__(self, send, rid: str, body_expected: bool, work: RequestWork):
        self._send, self.rid, self.work = send, rid, work
        self.status, self.started, self.body_unread = 0, False, body_expected
        self.watcher: asyncio.Future | None = None

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.work.answered()
            self.status, self.started = message["status"], True
            extra = [(b"x-request-id", self.rid.encode()), (b"x-content-type-options", b"nosniff")]
            if self.body_unread:
                extra.append((b"connection", b"close"))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await self._send(message)

    def counting(self, receive, cap: int):
        """``receive`` that raises BodyTooLarge past ``cap`` bytes and notes the body's end;
        from then on one task listens for the client going away (the app's own later calls
        wait on that task)."""
        received = 0

        async def watch():
            # after the body, the next message is the client leaving (or the server's note
            # that the answer was sent)
            message = await receive()
            if message["type"] == "http.disconnect" and not self.started:
                self.work.cancel("the client went away")
            return message

        async def receive_():
            nonlocal received
            if self.watcher is not None:
                return await asyncio.shield(self.watcher)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge()
                if not message.get("more_body", False):
                    self.body_unread = False
                    self.watcher = asyncio.ensure_future(watch())
            elif message["type"] == "http.disconnect":
                self.work.cancel("the client went away")
            return message

        return receive_


def _body_expected(headers: dict[bytes, bytes]) -> bool:
    return (
        headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
    )


class Guard:
    def __init__(self, app, config: ServeConfig, metrics: Metrics):
        self.app, self.config, self.metrics = app, config, metrics
        self._token = config.token.encode() if config.token else None
        self._trusted = config.trusted_hosts()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _REQUEST_ID.match(rid):
            rid = uuid.uuid4().hex[:16]
        work = RequestWork(on_late=self.metrics.late.observe)
        exchange = _Exchange(send, rid, _body_expected(headers), work)
        path, method = scope.get("path", ""), scope.get("method", "")
        try:
            refusal = (
                self._check_host(headers)
                or self._check_token(path, method, headers)
                or self._check_length(headers)
            )
            if refusal is not None:
                await self._answer(exchange, refusal)
            else:
                await self._run(
                    scope, exchange.counting(receive, self.config.max_upload_bytes), exchange
                )
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or (
                "static" if path.startswith("/static/") else "unmatched"
            )
            seconds = time.perf_counter() - t0
            self.metrics.requests.labels(name, method, str(exchange.status)).inc()
            self.metrics.latency.labels(name).observe(seconds)
            self._log(rid, method, path, exchange.status, seconds)

    def _check_host(self, headers: dict[bytes, bytes]) -> Refusal | None:
        """``Host`` must name this server: a page on another site whose name was pointed at
        this machine's address (DNS rebinding) sends its own name and is refused."""
        given = headers.get(b"host", b"").decode("latin-1")
        if self._trusted is None or host_name(given) in self._trusted:
            return None
        shown = repr(given[:100]) if given else "(none)"
        return Refusal(
            400,
            "host",
            f"The Host header {shown} is not a name this server answers to.",
            f"Open the server as {' or '.join(LOOPBACK_HOSTS)} (any port), or start it with "
            "--allowed-host NAME for each name its clients use.",
        )

    def _check_token(self, path: str, method: str, headers: dict[bytes, bytes]) -> Refusal | None:
        if (
            not self._token
            or not path.startswith(PROTECTED_PREFIXES)
            or method == "OPTIONS"
            or self._authorised(headers)
        ):
            return None
        return Refusal(
            401,
            "auth",
            "Missing or wrong bearer token.",
            "Send the header 'Authorization: Bearer TOKEN' with the token in the server's "
            "--token-file.",
            ((b"www-authenticate", b"Bearer"),),
        )

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        # compared in constant time, whatever was sent
        ok = hmac.compare_digest(value.strip(), self._token)
        return ok and scheme.lower() == b"bearer"

    def _check_length(self, headers: dict[bytes, bytes]) -> Refusal | None:
        length, cap = headers.get(b"content-length"), self.config.max_upload_bytes
        if length is None:
            return None  # a chunked body is counted while it is read
        if not length.isdigit():
            return Refusal(
                400, "bad_length", "Invalid Content-Length header.", "Send a byte count."
            )
        if int(length) > cap:
            return Refusal(
                413,
                "too_large",
                f"The request body is {int(length) / 2**20:.1f} MB, over the "
                f"{cap / 2**20:.0f} MB limit.",
                "Send a smaller poster (a few hundred kB is plenty).",
            )
        return None

    async def _run(self, scope, receive, exchange: _Exchange) -> None:
        timeout = self.config.request_timeout_s
        if not exchange.body_unread:
            # no body: take its empty message now, so a client leaving is heard from the start
            first = await receive()

            async def receive_first():
                nonlocal first
                if first is None:
                    return await receive()
                message, first = first, None
                return message

            app_receive = receive_first
        else:
            app_receive = receive
        context = set_current_work(exchange.work)
        try:
            await asyncio.wait_for(self.app(scope, app_receive, exchange.send), timeout)
        except asyncio.TimeoutError:
            exchange.work.cancel("timed out")
            if not exchange.started:
                await self._answer(
                    exchange,
                    Refusal(
                        504,
                        "timeout",
                        f"The request took longer than {timeout:g} s.",
                        "Retry later, or send fewer posters per request.",
                    ),
                )
        finally:
            reset_current_work(context)
            if exchange.watcher is not None and not exchange.watcher.done():
                exchange.watcher.cancel()

    async def _answer(self, exchange: _Exchange, refusal: Refusal) -> None:
        """Send ``refusal`` as the JSON problem document; never reads the request body."""
        self.metrics.rejected.labels(refusal.reason).inc()
        body = _problem_bytes(refusal.error, refusal.fix)
        await exchange.send(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *refusal.headers,
                ],
            }
        )
        await exchange.send({"type": "http.response.body", "body": body})

    def _log(self, rid: str, method: str, path: str, status: int, seconds: float) -> None:
        """One line per request; ``fields`` carries the same for a JSON log formatter."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        fields = {
            "request_id": rid,
            "method": method,
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 2),
        }
        access_log.info(
            "%s %s %s %.1f ms [%s]",
            method,
            path,
            status,
            seconds * 1000,
            rid,
            extra={"fields": fields},
        )
