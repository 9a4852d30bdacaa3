"""The service's side of the socket: what uvicorn is run with (``uvicorn_options``).

uvicorn bounds neither the time a client takes to send a request's head nor the number of
connections it holds, and when it refuses a body it closes the socket with the body still
arriving, which the kernel answers with a reset: a client that sends its whole body before it
reads (httpx, requests: no ``Expect: 100-continue``) loses the 413 (docs/threat-model.md). So:

* **head timeout** (``head_timeout_s``): from a connection's start, and again from the end of each
  answer on a kept-alive connection, until the next request's head is complete. A connection
  that has not sent a whole head by then is closed, with a 408 when it sent part of one (the
  slow-header attack: one header line every few seconds). uvicorn's own keep-alive timeout does
  not cover this: any byte received cancels it.
* **body timeout** (``body_timeout_s``): in the upload limit's middleware (``api/limits.py``), from
  the head to the body's last byte; 408 past it.
* **connection cap** (``max_connections``): uvicorn's ``limit_concurrency``; beyond it, requests
  are answered 503 at once.
* **arrival** at the first byte of a request's head (``data_received``), noted in the request's
  ``scope["state"]["arrived"]`` (``time.perf_counter()``), where a ``deadline_ms`` counts from
  (``api/requestlog.py`` keeps it): in a burst of 256 connections the application saw the last
  heads 0.2-0.8 s after their bytes had arrived (the event loop parses heads and runs the fan-out
  in turn), and that time was not counted in their deadlines.
* **lingering close**, as nginx does it (its ``lingering_close``, ``lingering_time`` and
  ``lingering_timeout``, http://nginx.org/en/docs/http/ngx_http_core_module.html#lingering_close):
  when an answer closes a connection whose request body is still arriving (a 413, a 408), the
  service sends the answer and its FIN, then reads and discards what the client still sends, for
  at most ``LINGER_S`` in all and ``LINGER_IDLE_S`` without a byte, before it closes. A client that
  writes its whole body before it reads then finds the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("fleetvote.api")

# nginx's defaults are 30 s and 5 s; 10 s in all bounds what a hostile client can make the service
# read after its answer (about 1 GB on loopback, discarded as it arrives, never buffered)
LINGER_S = 10.0
LINGER_IDLE_S = 2.0


def _timeout_answer(what: str, seconds: float) -> bytes:
    body = json.dumps({"detail": f"{what} not received within {seconds:g} s"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body


class _LingeringTransport:
    """The protocol's transport, but ``close()`` lingers while the request body is still arriving."""

    def __init__(self, transport: asyncio.Transport, protocol: "GuardedH11Protocol"):
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def close(self) -> None:
        p = self._protocol
        if p.lingering or self._transport.is_closing():
            return
        if p.conn.their_state is h11.SEND_BODY and self._transport.can_write_eof():
            p.start_lingering()
        else:
            self._transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a head timeout and a lingering close (module docstring)."""

    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.lingering = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0
        self._head_from: float | None = None  # when the current request's head began to arrive
        self._raw_transport = transport
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # the answer is out: what still comes is discarded unread
            self._linger_idle_from = self.loop.time()
            return
        if not self._in_request() and self._head_from is None:
            self._head_from = time.perf_counter()  # a request's first byte
        cycle = self.cycle
        super().data_received(data)
        if self._in_request():
            self._cancel_head_timer()
            if self.cycle is not cycle and self._head_from is not None:
                # a new request, its application task created but not yet run: it counts from here
                self.cycle.scope.setdefault("state", {})["arrived"] = self._head_from
                self._head_from = None

    def eof_received(self) -> bool | None:
        if self.lingering:
            self._raw_transport.close()
        return super().eof_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self.lingering or self._in_request():
            return
        if self.conn.their_state is h11.SEND_BODY:
            # answered before its body was read (a 401, a 404, a 415): the client may still be
            # sending it, and the head timer would cut it off mid-body, with its answer unread;
            # drain what it sends and close, as nginx's lingering close does
            self.start_lingering()
            return
        self._arm_head_timer()  # the next request's head, on a kept-alive connection

    # ---- the head timeout ----------------------------------------------------------------------

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._raw_transport.is_closing() or self.lingering or self._in_request():
            return
        partial, _closed = self.conn.trailing_data
        if partial:  # part of a head arrived: say why before closing; a silent connection just closes
            self._raw_transport.write(_timeout_answer("request head", self.head_timeout_s))
        log.info("connection closed: no complete request head in time",
                 extra={"client": "%s:%d" % self.client if self.client else None, "head_bytes": len(partial),
                        "timeout_s": self.head_timeout_s})
        self._raw_transport.close()

    # ---- lingering close -----------------------------------------------------------------------

    def start_lingering(self) -> None:
        self.lingering = True
        self._cancel_head_timer()
        self._raw_transport.write_eof()  # the answer, then our FIN; the client may go on sending
        self._raw_transport.resume_reading()  # flow control may have paused it while the app read
        now = self.loop.time()
        self._linger_until = now + LINGER_S
        self._linger_idle_from = now
        self._linger_check()

    def _linger_check(self) -> None:
        now = self.loop.time()
        if self._raw_transport.is_closing():
            return
        if now >= self._linger_until or now - self._linger_idle_from >= LINGER_IDLE_S:
            self._raw_transport.close()
            return
        wake = min(self._linger_until, self._linger_idle_from + LINGER_IDLE_S)
        self._linger_timer = self.loop.call_later(max(wake - now, 0.01), self._linger_check)


def protocol_class(head_timeout_s: float) -> type[GuardedH11Protocol]:
    """GuardedH11Protocol with this head timeout (uvicorn builds one protocol per connection)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"head_timeout_s": float(head_timeout_s)})


def uvicorn_options(settings) -> dict:
    """Keyword arguments of ``uvicorn.run``/``uvicorn.Config`` that apply the settings' limits."""
    return {"http": protocol_class(settings.head_timeout_s), "limit_concurrency": settings.max_connections}
