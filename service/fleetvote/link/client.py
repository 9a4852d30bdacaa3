"""asyncio client of one board: protocol v1 over a tty, ``socket://`` or ``rfc2217://`` URL.

    client = await BoardClient.open("/dev/ttyACM0", Timeouts(classify=5.0), baudrate=921_600)
    info = await client.hello()
    result = await client.classify(image)          # 32x32x3 uint8, HWC, RGB
    await client.close()

Shape (docs/protocol.md, STYLE.md habits 8-10):

* **Thin protocol over the sans-I/O codec.** `_LinkProtocol` (an asyncio.Protocol) only feeds
  received bytes to `codec.FrameDecoder` and hands the events to the client; matching replies to
  requests, deadlines and error translation live in `BoardClient`.
* **Swappable transports.** A tty path goes through pyserial-asyncio-fast's `SerialTransport`,
  ``socket://`` through its `create_serial_connection` (a plain asyncio TCP transport).
  ``rfc2217://`` cannot: pyserial-asyncio sets ``write_timeout = 0``, and pyserial's RFC 2217
  port raises NotImplementedError for any write timeout (pyserial-asyncio issue #46); it has no
  file descriptor to select on either. For it, `_ThreadedSerialTransport` wraps pyserial's own
  blocking port in an asyncio.Transport: a reader thread hands bytes to the loop with
  ``call_soon_threadsafe``, a writer thread drains a queue, so ``write()`` never blocks the loop.
* **Matching.** One request at a time (an asyncio.Lock); each carries a u16 sequence number
  that runs 1..65535 and skips 0, the seq of an ERROR whose header the board could not read. It
  starts at a random value per open, so a reply still in flight from a previous session is not
  taken for this one's first request. A reply whose seq is not the outstanding request's is
  dropped and counted (`LinkCounters.dropped_late_replies`), never returned later.
* **Resync.** The first request after open is preceded by a lone 0x00, which makes a board that
  holds half a frame drop it. Before each request the client forgets any unfinished frame its
  own decoder holds (noise from a booting board), so the noise cannot glue onto the reply.
* **Errors translated at this boundary** (fleetvote.errors), each ``from`` its cause and with
  the url in the message:

      deadline passed (phase default or per call)   BoardTimeout
      ERROR reply with the request's seq            BoardRejected(code=ErrorCode)
      reply of the wrong type / shape, a corrupt
      frame whose header names the request          BoardProtocolError
      port closed, OSError, SerialException         BoardGone
      unsupported URL scheme                        ConfigError

  A corrupt frame whose header does not name the request (noise, a late reply) is only counted;
  the request keeps waiting, and the timeout's message lists what arrived meanwhile.
* **Timeouts you own.** `Timeouts` holds one deadline per phase, enforced with asyncio.timeout;
  a request's `timeout=` argument replaces it for one call, and covers waiting for the link too.
  Only its own deadline becomes BoardTimeout; a CancelledError from outside passes through
  untouched. Blocking port open and close run in worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import serial
import serial_asyncio_fast

from ..errors import BoardGone, BoardProtocolError, BoardRejected, BoardTimeout, ConfigError
from .codec import (
    DELIMITER,
    INPUT_BYTES,
    MAX_PING,
    PROTOCOL_VERSION,
    REPLY_TO,
    DecodeError,
    Error,
    ErrorCode,
    Fault,
    FaultKind,
    FrameDecoder,
    FrameError,
    Info,
    Message,
    MsgType,
    Pong,
    Result,
    encode_frame,
)

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115_200  # the slowest board of the catalogue; callers pass the catalogue's baud

# The rfc2217 reader thread waits this long for a byte before it looks whether the transport is
# closing: bounds how long close() takes, costs nothing while data flows.
_THREAD_POLL_S = 0.1

# How many stray events a timeout's message lists before it only counts them.
_NOISE_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds each phase may take before BoardTimeout.

    classify is the long one: a 3,095-byte request takes 0.27 s at 115,200 baud and about 1.5 s
    on QEMU's emulated UART (about 2 KB/s), plus the inference itself on an emulated core.
    open covers an rfc2217 negotiation, which pyserial lets take up to 3 s.
    """

    open: float = 5.0
    hello: float = 2.0
    ping: float = 1.0
    classify: float = 10.0
    fault: float = 1.0
    close: float = 5.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if not getattr(self, name) > 0:
                raise ValueError(f"timeout {name} must be positive, got {getattr(self, name)}")


@dataclass(slots=True)
class LinkCounters:
    """What happened on one link since open; read freely, never reset by the client."""

    requests: int = 0  # requests sent
    timeouts: int = 0  # requests that got no matching reply in time
    dropped_late_replies: int = 0  # valid replies with a seq no request was waiting for
    stray_errors: int = 0  # ERROR replies with seq 0: frames the board could not read
    decode_errors: int = 0  # frames that failed COBS, length or CRC checks (incl. overlong)


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: 1..65535, wrapping past 0 (kept for unreadable ERRORs)."""
    return seq % 0xFFFF + 1


def image_bytes(pixels: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    """The 3,072 payload bytes of an image: uint8, 32x32x3 HWC RGB (or already flat)."""
    if isinstance(pixels, np.ndarray):
        if pixels.dtype != np.uint8:
            # a float image in 0..1 would be sent as garbage: make the caller convert explicitly
            raise ValueError(f"image dtype must be uint8, got {pixels.dtype}")
        if pixels.shape not in ((32, 32, 3), (INPUT_BYTES,)):
            raise ValueError(f"image shape must be (32, 32, 3), got {pixels.shape}")
        return pixels.tobytes(order="C")
    data = bytes(pixels)
    if len(data) != INPUT_BYTES:
        raise ValueError(f"an image is {INPUT_BYTES} bytes, got {len(data)}")
    return data


def _code_name(code: int) -> str:
    return code.name if isinstance(code, ErrorCode) else f"code {code}"


@dataclass(frozen=True, slots=True)
class _Lost:
    """Outcome of a request whose link went away (exc: the transport's, None when it was EOF)."""

    exc: BaseException | None
    why: str


_Outcome = Message | DecodeError | _Lost


@dataclass(slots=True)
class _Pending:
    seq: int
    request: MsgType
    reply: MsgType
    future: asyncio.Future[_Outcome]
    noise: list[str] = field(default_factory=list)  # the first strays meanwhile, for a timeout
    more_noise: int = 0  # and how many more (a board spewing text must not fill memory)

    def note(self, text: str) -> None:
        if len(self.noise) < _NOISE_SHOWN:
            self.noise.append(text)
        else:
            self.more_noise += 1


class _LinkProtocol(asyncio.Protocol):
    """Feeds received bytes to the frame decoder and hands the events on; nothing else."""

    def __init__(self, on_event: Callable[[Message | DecodeError], None],
                 on_lost: Callable[[BaseException | None], None]) -> None:
        self.decoder = FrameDecoder()
        self._on_event = on_event
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            self._on_event(event)

    def eof_received(self) -> bool:
        return False  # the board hung up: let the transport close, connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        self._on_lost(exc)


class BoardClient:
    """One board over one link. Create with `await BoardClient.open(url, timeouts)`."""

    def __init__(self, url: str, timeouts: Timeouts, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.timeouts = timeouts
        self.counters = LinkCounters()
        self.info: Info | None = None  # from the last hello()
        self._protocol = _LinkProtocol(self._on_event, self._on_lost)
        self._transport: asyncio.Transport | None = None
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._seq = random.randrange(0xFFFF)  # next_seq() turns it into 1..65535
        self._flushed = False
        self._closing = False
        self._lost: _Lost | None = None
        self._lost_future: asyncio.Future[None] = loop.create_future()

    # ----------------------------------------------------------------------- open / close

    @classmethod
    async def open(cls, url: str, timeouts: Timeouts = Timeouts(), *,
                   baudrate: int = DEFAULT_BAUD) -> BoardClient:
        """Open the link; no byte is sent yet. `baudrate` matters for real UARTs only."""
        loop = asyncio.get_running_loop()
        client = cls(url, timeouts, loop)
        try:
            async with asyncio.timeout(timeouts.open):
                client._transport = await _connect(loop, url, client._protocol, baudrate)
        except TimeoutError as exc:
            raise BoardTimeout(f"link not open after {timeouts.open} s", url) from exc
        except (OSError, serial.SerialException) as exc:
            raise BoardGone(f"cannot open the link: {exc}", url) from exc
        log.debug("%s: link open", url)
        return client

    async def close(self) -> None:
        """Close the link and wait until the port is released. Idempotent."""
        if not self._closing:
            self._closing = True
            self._resolve(_Lost(None, "the client was closed"))
            if self._transport is not None and self._lost is None:
                # abort, not close: a board that stopped reading must not keep a drain waiting
                self._transport.abort()
        if self._transport is None:
            return
        try:
            async with asyncio.timeout(self.timeouts.close):
                await asyncio.shield(self._lost_future)
        except TimeoutError as exc:
            raise BoardTimeout(f"link not closed after {self.timeouts.close} s", self.url) from exc

    async def __aenter__(self) -> BoardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_lost(self) -> None:
        """Returns when the link is lost (the board hung up, the port vanished) or closed: an
        owner task waits on this beside its queue, so an unplug is seen at once, not at the next
        request or health check."""
        await asyncio.shield(self._lost_future)

    @property
    def is_closed(self) -> bool:
        return self._closing or self._lost is not None

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        return f"<BoardClient {self.url} {state} {self.counters}>"

    # --------------------------------------------------------------------------- requests

    # Each request takes an optional `timeout` (seconds) that replaces the phase's default for
    # this one call: a caller with its own deadline (a queued job) passes what is left of it.

    async def hello(self, *, timeout: float | None = None) -> Info:
        """INFO of the board; also kept in `self.info`."""
        info = await self._request(MsgType.HELLO, b"", timeout, self.timeouts.hello)
        assert isinstance(info, Info)
        if info.protocol_version != PROTOCOL_VERSION:
            raise BoardProtocolError(
                f"board speaks protocol {info.protocol_version}, this host {PROTOCOL_VERSION}",
                self.url)
        self.info = info
        return info

    async def ping(self, data: bytes = b"", *, timeout: float | None = None) -> float:
        """Round trip of a PING carrying `data` (at most 64 bytes), in seconds."""
        if len(data) > MAX_PING:
            raise ValueError(f"ping payload of {len(data)} bytes, at most {MAX_PING}")
        start = time.perf_counter()
        pong = await self._request(MsgType.PING, bytes(data), timeout, self.timeouts.ping)
        elapsed = time.perf_counter() - start
        assert isinstance(pong, Pong)
        if pong.data != data:
            raise BoardProtocolError(f"PONG echoed {pong.data!r} for {bytes(data)!r}", self.url)
        return elapsed

    async def classify(self, pixels: bytes | bytearray | memoryview | np.ndarray, *,
                       timeout: float | None = None) -> Result:
        """Classify one image: 3,072 uint8 bytes, 32x32 HWC RGB."""
        result = await self._request(MsgType.CLASSIFY, image_bytes(pixels),
                                     timeout, self.timeouts.classify)
        assert isinstance(result, Result)
        return result

    async def fault(self, kind: FaultKind | int, arg: int = 0, *,
                    timeout: float | None = None) -> None:
        """Arm a fault for the board's next reply (test builds; BoardRejected(TEST_ONLY) else)."""
        payload = Fault(0, kind, arg).payload()  # validates kind (u8) and arg (u32)
        await self._request(MsgType.FAULT, payload, timeout, self.timeouts.fault)

    async def _request(self, kind: MsgType, payload: bytes, timeout: float | None,
                       phase_timeout: float) -> Message:
        """Send one request and wait for its reply. The deadline covers the whole call: waiting
        for the link (another request in flight), sending, and the reply."""
        timeout = phase_timeout if timeout is None else timeout
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        pending: _Pending | None = None
        try:
            async with asyncio.timeout(timeout), self._lock:
                pending = self._send(kind, payload)
                try:
                    outcome = await pending.future
                finally:
                    self._pending = None
        except TimeoutError as exc:
            if pending is None:  # never sent: the board is not to blame
                raise BoardTimeout(f"{kind.name} not sent within {timeout} s: the link was busy",
                                   self.url) from exc
            self.counters.timeouts += 1
            raise BoardTimeout(self._timeout_message(pending, timeout), self.url) from exc
        return self._check_reply(pending, outcome)

    def _send(self, kind: MsgType, payload: bytes) -> _Pending:
        """Write one request and make it the outstanding one (the lock is held)."""
        self._check_usable()
        assert self._transport is not None
        self._seq = seq = next_seq(self._seq)
        wire = encode_frame(kind, seq, payload)
        if not self._flushed:
            wire = DELIMITER + wire  # a board holding half a frame drops it: in sync again
            self._flushed = True
        pending = _Pending(seq, kind, REPLY_TO[kind], asyncio.get_running_loop().create_future())
        # What the decoder holds now predates this request and cannot start its reply.
        self._protocol.decoder.reset()
        try:
            self._transport.write(wire)
        except (OSError, serial.SerialException) as exc:
            raise BoardGone(f"cannot send {kind.name}: {exc}", self.url) from exc
        self._pending = pending
        self.counters.requests += 1
        return pending

    def _check_usable(self) -> None:
        if self._closing:
            raise BoardGone("the client is closed", self.url)
        if self._lost is not None:
            raise BoardGone(f"link lost: {self._lost.why}", self.url) from self._lost.exc

    def _check_reply(self, pending: _Pending, outcome: _Outcome) -> Message:
        what = f"{pending.request.name} seq {pending.seq}"
        if isinstance(outcome, _Lost):
            raise BoardGone(f"no reply to {what}: {outcome.why}", self.url) from outcome.exc
        if isinstance(outcome, DecodeError):
            raise BoardProtocolError(
                f"corrupt reply to {what}: {outcome.code.name}: {outcome.detail}",
                self.url) from FrameError(outcome)
        if isinstance(outcome, Error):
            raise BoardRejected(
                f"board rejected {what}: {_code_name(outcome.code)} {outcome.text!r}", self.url,
                code=int(outcome.code))
        if outcome.TYPE != pending.reply:
            hint = " (is the tty echoing?)" if outcome.TYPE == pending.request else ""
            raise BoardProtocolError(
                f"{what} answered by {outcome.TYPE.name}, expected {pending.reply.name}{hint}",
                self.url)
        return outcome

    def _timeout_message(self, pending: _Pending, timeout: float) -> str:
        text = f"no reply to {pending.request.name} seq {pending.seq} within {timeout} s"
        if pending.noise:
            more = f"; {pending.more_noise} more" if pending.more_noise else ""
            text += f" (meanwhile: {'; '.join(pending.noise)}{more})"
        return text

    # ------------------------------------------------------------------ protocol callbacks

    def _on_event(self, event: Message | DecodeError) -> None:
        pending = self._pending
        if pending is not None and pending.future.done():
            pending = None  # answered already (or closed): anything else is stray
        if isinstance(event, DecodeError):
            self.counters.decode_errors += 1
            if pending is not None and event.seq == pending.seq \
                    and event.type in (pending.reply, MsgType.ERROR):
                pending.future.set_result(event)  # the reply itself, corrupted: fail fast
                return
            note = f"{event.code.name}: {event.detail}"
        elif pending is not None and event.seq == pending.seq:
            pending.future.set_result(event)
            return
        elif isinstance(event, Error) and event.seq == 0:
            self.counters.stray_errors += 1
            note = f"ERROR {_code_name(event.code)} seq 0 {event.text!r}"
        else:
            self.counters.dropped_late_replies += 1
            note = f"{event.TYPE.name} seq {event.seq} dropped"
        log.debug("%s: %s", self.url, note)
        if self._pending is not None:
            self._pending.note(note)

    def _on_lost(self, exc: BaseException | None) -> None:
        why = "the client was closed" if self._closing else \
            f"the link closed: {exc}" if exc else "the board closed the link"
        self._lost = _Lost(exc, why)
        self._resolve(self._lost)
        if not self._lost_future.done():
            self._lost_future.set_result(None)
        log.debug("%s: %s", self.url, why)

    def _resolve(self, outcome: _Lost) -> None:
        pending = self._pending
        if pending is not None and not pending.future.done():
            pending.future.set_result(outcome)


# ------------------------------------------------------------------------------ transports


async def _connect(loop: asyncio.AbstractEventLoop, url: str, protocol: asyncio.Protocol,
                   baudrate: int) -> asyncio.Transport:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "socket":
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: protocol, url)
        return transport
    if scheme == "rfc2217":
        port = await _open_port(lambda: serial.serial_for_url(
            url, baudrate=baudrate, timeout=_THREAD_POLL_S))
        return _ThreadedSerialTransport(loop, protocol, port, url)
    if scheme == "":
        # exclusive: a second process on the same tty would interleave its frames with ours
        port = await _open_port(lambda: serial.serial_for_url(
            url, baudrate=baudrate, exclusive=True))
        transport, _ = await serial_asyncio_fast.connection_for_serial(
            loop, lambda: protocol, port)
        return transport
    raise ConfigError(f"{url}: unsupported link; use a tty path, socket://HOST:PORT or "
                      f"rfc2217://HOST:PORT")


async def _open_port(open_port: Callable[[], Any]) -> Any:
    """Run a blocking pyserial open in a worker thread. If the caller is cancelled (the open
    deadline passed), the thread cannot be stopped: the port is closed once it has opened."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, open_port)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_close_orphan)
        raise


def _close_orphan(future: asyncio.Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    threading.Thread(target=future.result().close, name="fleetvote orphan close",
                     daemon=True).start()


class _ThreadedSerialTransport(asyncio.Transport):
    """asyncio.Transport over a blocking pyserial port, for URLs pyserial-asyncio cannot drive.

    The reader thread hands received bytes to the protocol through call_soon_threadsafe. The
    writer thread drains a queue, and on close (or a failure of either thread) closes the port,
    joins the reader and only then reports connection_lost: once the protocol hears of it, the
    port is released.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol,
                 port: serial.SerialBase, name: str) -> None:
        super().__init__({"serial": port})
        self._loop = loop
        self._protocol = protocol
        self._port = port
        self._closing = False
        self._error: BaseException | None = None
        self._writes: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read_loop, name=f"fleetvote read {name}",
                                        daemon=True)
        self._writer = threading.Thread(target=self._write_loop,
                                        name=f"fleetvote write {name}", daemon=True)
        protocol.connection_made(self)
        self._reader.start()
        self._writer.start()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:  # like asyncio's transports: writes after close are dropped
            self._writes.put(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._writes.put(None)

    def abort(self) -> None:
        self.close()  # what is queued is at most one request: the writer drains it quickly

    def get_write_buffer_size(self) -> int:
        return self._writes.qsize()

    def _read_loop(self) -> None:
        port = self._port
        try:
            while not self._closing:
                data = port.read(1)  # returns after _THREAD_POLL_S without data
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(waiting)
                    self._call(self._protocol.data_received, data)
        except Exception as exc:  # SerialException, OSError: the link failed under us
            if not self._closing:
                self._error = exc
        finally:
            self.close()

    def _write_loop(self) -> None:
        while (data := self._writes.get()) is not None:
            try:
                self._port.write(data)
            except Exception as exc:
                self._error = self._error or exc
                self._closing = True
                break
        try:
            self._port.close()
        except Exception:
            log.debug("closing %s failed", self._port.portstr, exc_info=True)
        self._reader.join()
        self._call(self._protocol.connection_lost, self._error)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self._loop.call_soon_threadsafe(callback, *args)


def quiet_link_errors(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Report a serial transport's write failure (a board unplugged while a frame went out) as one
    log line instead of the event loop's traceback: the transport closes itself, the protocol
    sees connection_lost and the board's owner task reconnects, so it is news, not a bug.
    Anything else goes to the handler that was there. Returns a function that restores it."""
    previous = loop.get_exception_handler()

    def handler(lp: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(context.get("transport"), serial_asyncio_fast.SerialTransport) \
                and isinstance(exc, (serial.SerialException, OSError)):
            port = getattr(getattr(context["transport"], "serial", None), "port", "?")
            log.info("%s: %s (the link is closed and reopened)", port, exc)
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return lambda: loop.set_exception_handler(previous)
