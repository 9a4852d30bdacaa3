"""Upload limit and body timeout enforced on the stream, before the body is read: a pure ASGI
middleware.

FastAPI sets no limit of its own. A declared Content-Length over the limit is refused at once;
a chunked body is counted as it arrives and refused as soon as it passes the limit, so a client
can never make the service buffer more than ``limit`` bytes. A body not received whole within
``body_timeout_s`` of the request's start is refused with 408. Both refusals close the
connection; the server's lingering close (``api/server.py``) lets a client that is still sending
read them rather than a reset.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import HTTPException

CLOSE = {"Connection": "close"}  # the body's rest is not read: this connection carries no next request


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive``: FastAPI's exception handling turns it into the 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"body exceeds the upload limit of {limit} bytes", headers=CLOSE)


class BodyTimeout(HTTPException):
    """Raised from inside ``receive`` when the body is late: a 408."""

    def __init__(self, seconds: float):
        super().__init__(408, f"request body not received within {seconds:g} s", headers=CLOSE)


class UploadLimit:
    def __init__(self, app, limit: int, body_timeout_s: float | None = None):
        self.app = app
        self.limit = limit
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _reject(send, 400, "invalid Content-Length header", scope["path"])
                if declared > self.limit:
                    return await _reject(send, 413, f"body of {declared} bytes exceeds the upload limit of "
                                                    f"{self.limit} bytes", scope["path"])
        seen = 0
        started = False
        loop = asyncio.get_running_loop()
        until = loop.time() + self.body_timeout_s if self.body_timeout_s else None
        body_done = False

        async def counting_receive():
            nonlocal seen, body_done
            if until is None or body_done:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(until):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, 413, f"body exceeds the upload limit of {self.limit} bytes", scope["path"])
        except BodyTimeout:
            if not started:
                await _reject(send, 408, f"request body not received within {self.body_timeout_s:g} s", scope["path"])


async def _reject(send, status: int, detail: str, path: str = "") -> None:
    # the inference protocol's routes (routes/oip.py) answer errors as {"error": ...}
    body = json.dumps({"error" if path.startswith("/v2") else "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
