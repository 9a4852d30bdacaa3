"""A request id for every HTTP request, and one log line per request: a pure ASGI middleware.

The id is the caller's ``X-Request-ID`` when it is a short token (so a proxy's or a client's id
runs through), otherwise a new random one. While the request is served it sits in
``logs.REQUEST_ID``, so every record logged on its behalf carries ``request``; the response
returns it in ``X-Request-ID``. The line says method, path, status and duration: at info for
POSTs and errors, at debug for the GETs a dashboard repeats every second.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from ..logs import REQUEST_ID

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
