"""Limits in front of the routes: the API key (401, also on a WebSocket handshake), the upload size (413), the
bounded queue (503).

``ApiKeyCheck`` and ``BodyLimit`` are plain ASGI middleware (they see every request before its body is read);
``Admission`` counts the requests admitted, on the event loop.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from .errors import ApiError
from .metrics import Metrics

OPEN_PATHS = ("/health", "/metrics")  # reachable without the API key (probes, Prometheus)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server's limit of {limit} bytes "
                         f"({limit / 2**20:.1f} MiB)", param="file", code="file_too_large")


async def _send_error(send, error: ApiError) -> None:
    response = error.response()
    await response({"type": "http"}, _no_receive, send)


async def _no_receive():  # a response never reads the request
    return {"type": "http.disconnect"}


class BodyLimit:
    """413 for a body over ``limit`` bytes: at once when its Content-Length says so, else (chunked uploads)
    ``BodyTooLarge`` from ``receive`` once more has come, which the route answers."""

    def __init__(self, app, limit: int, metrics: Metrics):
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            self.metrics.rejected.labels("too_large").inc()
            return await _send_error(send, BodyTooLarge(self.limit))
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    self.metrics.rejected.labels("too_large").inc()
                    raise BodyTooLarge(self.limit)
            return message

        return await self.app(scope, limited, send)


async def _refuse_websocket(scope, receive, send, error: ApiError) -> None:
    """Refuse a WebSocket handshake: the HTTP error itself where the server can send one (ASGI's denial response
    extension; uvicorn's websockets can), else a close (the client sees 403)."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        return await error.response()(scope, receive, send)  # starlette's response speaks the extension
    await send({"type": "websocket.close", "code": 1008, "reason": error.code or ""})


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeyCheck:
    """401 unless ``Authorization: Bearer <key>``; the key is compared in constant time (as digests, so that
    not even its length shows)."""

    def __init__(self, app, key: str, metrics: Metrics, open_paths=OPEN_PATHS):
        self.app, self.digest, self.metrics, self.open_paths = app, _digest(key), metrics, open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(_digest(given.strip()), self.digest)):
            self.metrics.rejected.labels("unauthorized").inc()
            error = ApiError(401, "missing or incorrect API key: send the header 'Authorization: Bearer <key>'",
                             code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
            if scope["type"] == "websocket":
                return await _refuse_websocket(scope, receive, send, error)
            return await _send_error(send, error)
        return await self.app(scope, receive, send)


class Admission:
    """At most ``capacity`` requests admitted at once (a row each plus the queue); the next get 503 with
    Retry-After. Used on the event loop only (no lock needed)."""

    def __init__(self, capacity: int, retry_after_s: int, metrics: Metrics):
        self.capacity, self.retry_after_s, self.metrics = capacity, retry_after_s, metrics
        self.admitted = 0
        self.closing = False

    def enter(self) -> "Ticket":
        if self.closing:
            raise ApiError(503, "the server is shutting down", code="shutting_down",
                           headers={"Retry-After": str(self.retry_after_s)})
        if self.admitted >= self.capacity:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(503, f"the server is busy: {self.admitted} requests are in flight (its limit); retry "
                           f"after {self.retry_after_s} s", code="queue_full",
                           headers={"Retry-After": str(self.retry_after_s)})
        self.admitted += 1
        self.metrics.in_flight.set(self.admitted)
        return Ticket(self)


class Ticket:
    """One admitted request; ``release`` (idempotent) when it is answered."""

    def __init__(self, admission: Optional[Admission]):
        self.admission = admission

    def release(self) -> None:
        if self.admission is not None:
            self.admission.admitted -= 1
            self.admission.metrics.in_flight.set(self.admission.admitted)
            self.admission = None


__all__ = ["Admission", "ApiKeyCheck", "BodyLimit", "BodyTooLarge", "OPEN_PATHS", "Ticket"]
