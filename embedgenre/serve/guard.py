"""What every request passes through before any route runs: request id, bearer token, body
size cap (from Content-Length before anything is read, and counted while reading), a time
limit, then a log line and metrics once it is answered. A plain ASGI middleware."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid

from embedgenre.serve.config import ServeConfig
from embedgenre.serve.metrics import Metrics

access_log = logging.getLogger("embedgenre.serve.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PROTECTED_PREFIXES = ("/v1/", "/metrics")


class BodyTooLarge(Exception):
    """The request body grew past the cap while it was being read."""


def _problem_bytes(error: str, fix: str) -> bytes:
    return json.dumps({"error": error, "fix": fix}).encode()


class Guard:
    def __init__(self, app, config: ServeConfig, metrics: Metrics):
        self.app, self.config, self.metrics = app, config, metrics
        self._token = config.token.encode() if config.token else None

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        # compared in constant time, whatever was sent
        ok = hmac.compare_digest(value.strip(), self._token)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _REQUEST_ID.match(rid):
            rid = uuid.uuid4().hex[:16]
        state = {"status": 0, "started": False}

        async def send_(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", rid.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        async def answer(status: int, reason: str, error: str, fix: str, extra=()):
            self.metrics.rejected.labels(reason).inc()
            body = _problem_bytes(error, fix)
            await send_(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *extra,
                    ],
                }
            )
            await send_({"type": "http.response.body", "body": body})

        path, method = scope.get("path", ""), scope.get("method", "")
        cap = self.config.max_upload_bytes
        try:
            if (
                self._token
                and path.startswith(PROTECTED_PREFIXES)
                and method != "OPTIONS"
                and not self._authorised(headers)
            ):
                return await answer(
                    401,
                    "auth",
                    "Missing or wrong bearer token.",
                    "Send the header 'Authorization: Bearer TOKEN' with the token in the "
                    "server's --token-file.",
                    [(b"www-authenticate", b"Bearer")],
                )
            length = headers.get(b"content-length")
            if length is not None:
                if not length.isdigit():
                    return await answer(
                        400, "bad_length", "Invalid Content-Length header.", "Send a byte count."
                    )
                if int(length) > cap:
                    return await answer(
                        413,
                        "too_large",
                        f"The request body is {int(length) / 2**20:.1f} MB, over the "
                        f"{cap / 2**20:.0f} MB limit.",
                        "Send a smaller poster (a few hundred kB is plenty).",
                    )
            received = 0

            async def receive_():
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > cap:
                        raise BodyTooLarge()
                return message

            try:
                await asyncio.wait_for(
                    self.app(scope, receive_, send_), self.config.request_timeout_s
                )
            except asyncio.TimeoutError:
                if not state["started"]:
                    await answer(
                        504,
                        "timeout",
                        f"The request took longer than {self.config.request_timeout_s:g} s.",
                        "Retry later, or send fewer posters per request.",
                    )
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or (
                "static" if path.startswith("/static/") else "unmatched"
            )
            seconds = time.perf_counter() - t0
            self.metrics.requests.labels(name, method, str(state["status"])).inc()
            self.metrics.latency.labels(name).observe(seconds)
            self._log(rid, method, path, state["status"], seconds)

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
