"""Upload limit enforced on the stream, before the body is read: a pure ASGI middleware.

FastAPI sets no limit of its own. A declared Content-Length over the limit is refused at once;
a chunked body is counted as it arrives and refused as soon as it passes the limit, so a client
can never make the service buffer more than ``limit`` bytes.
"""

from __future__ import annotations

import json


from fastapi import HTTPException


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive``: FastAPI's exception handling turns it into the 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"body exceeds the upload limit of {limit} bytes")


class UploadLimit:
    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

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

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
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


async def _reject(send, status: int, detail: str, path: str = "") -> None:
    # the inference protocol's routes (routes/oip.py) answer errors as {"error": ...}
    body = json.dumps({"error" if path.startswith("/v2") else "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
