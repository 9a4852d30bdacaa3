"""Per-request bookkeeping, as pure ASGI middleware: a request id and one log line (RequestLog),
and the count by route and status (RequestCount).

The id is the caller's ``X-Request-ID`` when it is a short token (so a proxy's or a client's id
runs through), otherwise a new random one. While the request is served it sits in
``logs.REQUEST_ID``, so every record logged on its behalf carries ``request``; the response
returns it in ``X-Request-ID``. The line says method, path, status and duration: at info for
POSTs and errors, at debug for the GETs a dashboard repeats every second.

RequestCount is the only place that counts and times requests (``fleetvote_http_requests_total``,
``fleetvote_http_request_duration_seconds``): every status the client gets, whoever answered it (a
route, an exception handler, FastAPI's 422 for a bad query or a dependency's 422, the upload
limit's 413 before any route ran, or the 500 of an unhandled error). The ``route`` label is the
route's path template, so the series stay few; a request that matches no route is counted under
``(unmatched)``. The duration runs from the request's arrival to the end of its answer's body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Iterable

from starlette.routing import compile_path

from ..logs import REQUEST_ID
from ..metrics import Metrics

log = logging.getLogger("fleetvote.api")

_TOKEN = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def request_id(headers) -> str:
    for name, value in headers:
        if name == b"x-request-id" and _TOKEN.fullmatch(value):
            return value.decode()
    return secrets.token_hex(8)


class RequestLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id(scope.get("headers", []))
        token = REQUEST_ID.set(rid)
        t0 = time.perf_counter()
        # the request's arrival: the first byte of its head when the server noted it (api/server.py),
        # else as early as the application sees it; a deadline_ms counts from here
        # (request.state.arrived), so time spent parsing, in the middlewares and reading the body counts too
        scope.setdefault("state", {}).setdefault("arrived", t0)
        status = 500  # what the client gets when the app raises before answering

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = round((time.perf_counter() - t0) * 1000, 1)
            level = logging.INFO if scope["method"] not in ("GET", "HEAD") or status >= 400 else logging.DEBUG
            log.log(level, "request", extra={"request": rid, "method": scope["method"], "path": scope["path"],
                                             "status": status, "ms": ms})
            REQUEST_ID.reset(token)


UNMATCHED = "(unmatched)"


class RequestCount:
    """``paths``: the routes' path templates, to label a request that was answered before
    routing (the upload limit's refusals); a routed request's route is in its scope."""

    def __init__(self, app, metrics: Metrics, paths: Iterable[str] = ()):
        self.app = app
        self.metrics = metrics
        self._templates = [(compile_path(p)[0], p) for p in paths]

    def route(self, scope) -> str:
        """The ``route`` label of a request: its route's path template."""
        path = getattr(scope.get("route"), "path", None)
        if path is None:
            path = next((p for regex, p in self._templates if regex.match(scope["path"])), None)
        return UNMATCHED if path is None else path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # what the client gets when the app raises before answering
        t0 = time.perf_counter()

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except asyncio.CancelledError:
            raise  # the client or the server went away: no answer to count
        except Exception:
            self.metrics.request(self.route(scope), status, time.perf_counter() - t0)
            raise
        self.metrics.request(self.route(scope), status, time.perf_counter() - t0)
