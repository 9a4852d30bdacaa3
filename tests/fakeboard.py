"""A fake board in Python, for the link client's tests (and anyone else's).

`FakeBoard` is the board's logic over the sans-I/O codec, itself sans-I/O: `feed(bytes)` returns
actions (bytes to write, a pause, an unplug), with the fault injection of docs/protocol.md
(test build). Runners put it on a real link:

    PtyBoard        a thread on the master side of a real pty (os.openpty, raw mode); the client
                    opens the slave's path, as it would a board's /dev/ttyACM0
    TcpBoard        an asyncio TCP server on 127.0.0.1, for socket:// URLs
    Rfc2217Board    pyserial's RFC 2217 PortManager on 127.0.0.1, bridging TCP to a PtyBoard's
                    pty, for rfc2217:// URLs (loopback only)

Faults act on the next reply, like the firmware: GARBAGE sends random non-zero bytes and a
delimiter, then the reply, so the host drops one bad frame and still reads the reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import select
import socket
import threading
import time
import tty
from dataclasses import dataclass
import serial
import serial.rfc2217

from fleetvote.link import codec
from fleetvote.link.codec import (
    Classify,
    DecodeError,
    Error,
    ErrorCode,
    Fault,
    FaultAck,
    FaultKind,
    FrameDecoder,
    Hello,
    Info,
    Message,
    Ping,
    Pong,
    Result,
)


@dataclass(frozen=True)
class Sleep:
    seconds: float


class Unplug:
    """Close the link (the board's process exits, the USB cable is pulled)."""


UNPLUG = Unplug()
Action = bytes | Sleep | Unplug


def default_info(seq: int = 0, *, test_build: bool = True) -> Info:
    return Info(seq=seq, protocol_version=1, firmware_version=(0, 1, 0),
                board_id=bytes(range(0x10, 0x1C)), model_sha256=bytes.fromhex("0123456789abcdef"),
                macc=1_234_567, arena_bytes=45_678, core_clock_hz=100_000_000, link_baud=0,
                input_bytes=3072, num_classes=10, flags=1 if test_build else 0,
                weight_bytes=98_765, board_name="host", model_id="fake-cnn")


def scores_for(pixels: bytes) -> tuple[int, ...]:
    """The fake's 'inference': ten int8 scores that differ for every image."""
    return tuple(b - 128 for b in hashlib.sha256(pixels).digest()[:10])


class FakeBoard:
    """Board logic: bytes from the host in, actions out. Records what it received."""

    def __init__(self, *, test_build: bool = True, info: Info | None = None,
                 seed: int = 0) -> None:
        self.test_build = test_build
        self.info = info or default_info(test_build=test_build)
        self.decoder = FrameDecoder()
        self.received = bytearray()  # every byte from the host, flushes included
        self.requests: list[Message] = []
        self.errors: list[DecodeError] = []
        self.hung = False
        self._fault: tuple[int, int] | None = None
        self._prefix = b""
        self._rng = random.Random(seed)

    def prefix_next_reply(self, data: bytes) -> None:
        """Send `data` (noise, a stray frame) just before the next reply, once."""
        self._prefix = data

    def feed(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        self.received += data
        if self.hung:
            return actions
        for event in self.decoder.feed(data):
            if isinstance(event, DecodeError):
                self.errors.append(event)
                reply: Message = Error(event.seq or 0, event.code, event.type or 0,
                                       event.code.name.lower())
            else:
                self.requests.append(event)
                reply = self._answer(event)
            actions += self._send(reply)
            if self.hung or any(a is UNPLUG for a in actions):
                break
        return actions

    def _answer(self, msg: Message) -> Message:
        if isinstance(msg, Hello):
            return dataclasses.replace(self.info, seq=msg.seq)
        if isinstance(msg, Ping):
            return Pong(msg.seq, msg.data)
        if isinstance(msg, Classify):
            return Result(msg.seq, scores_for(msg.pixels), 1234, 56_789)
        if isinstance(msg, Fault):
            if not self.test_build:
                return Error(msg.seq, ErrorCode.TEST_ONLY, msg.TYPE, "release build")
            self._fault = (msg.kind, msg.arg)  # armed after the ack, which it spares
            return FaultAck(msg.seq)
        return Error(msg.seq, ErrorCode.UNKNOWN_TYPE, msg.TYPE, "not a request")

    def _send(self, reply: Message) -> list[Action]:
        wire, self._prefix = self._prefix + codec.encode(reply), b""
        if isinstance(reply, FaultAck) or self._fault is None:
            return [wire]  # a FAULT's own ack is spared: the fault is for the next reply
        fault, self._fault = self._fault, None
        kind, arg = fault
        if kind == FaultKind.DROP:
            return []
        if kind == FaultKind.DELAY:
            return [Sleep(arg / 1000), wire]
        if kind == FaultKind.GARBAGE:
            return [bytes(self._rng.randrange(1, 256) for _ in range(arg)) + codec.DELIMITER + wire]
        if kind == FaultKind.BAD_CRC:
            frame = bytearray(codec.frame_bytes(reply.TYPE, reply.seq, reply.payload()))
            frame[-1] ^= 0x01
            return [codec.cobs_encode(bytes(frame)) + codec.DELIMITER]  # header intact
        if kind == FaultKind.RESET:
            self.decoder = FrameDecoder()
            return [wire[: len(wire) // 2]]
        if kind == FaultKind.HANG:
            self.hung = True
            return []
        if kind == FaultKind.UNPLUG:
            return [UNPLUG]
        return [wire]


class PtyBoard:
    """A FakeBoard on the master side of a real pty; `path` is the slave the client opens."""

    def __init__(self, board: FakeBoard | None = None) -> None:
        self.board = board or FakeBoard()
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._stop_r, self._stop_w = os.pipe()
        self._write_lock = threading.Lock()
        self._unplugged = False
        self._thread = threading.Thread(target=self._run, name="fake board", daemon=True)
        self._thread.start()

    def inject(self, data: bytes) -> None:
        """Send raw bytes to the host now (noise, a half frame, a stale reply)."""
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.master, view):]

    def unplug(self) -> None:
        if not self._unplugged:
            self._unplugged = True
            os.close(self.master)
            os.close(self._slave)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        self.unplug()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            for action in self.board.feed(data):
                if isinstance(action, Sleep):
                    time.sleep(action.seconds)
                elif isinstance(action, Unplug):
                    self.unplug()
                    return
                else:
                    self.inject(action)


class TcpBoard:
    """A FakeBoard behind an asyncio TCP server on 127.0.0.1 (one board per connection)."""

    def __init__(self, board: FakeBoard | None = None) -> None:
        self.board = board or FakeBoard()
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> TcpBoard:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"socket://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while data := await reader.read(65536):
                for action in self.board.feed(data):
                    if isinstance(action, Sleep):
                        await asyncio.sleep(action.seconds)
                    elif isinstance(action, Unplug):
                        return
                    else:
                        writer.write(action)
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class _PtyPort(serial.Serial):
    """pyserial on a pty slave. A pty has no modem lines (TIOCMGET: ENOTTY), which PortManager
    polls and the RFC 2217 client sets: report them idle and ignore the settings."""

    cts = dsr = ri = cd = property(lambda self: False)  # type: ignore[assignment]

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass


class Rfc2217Board:
    """An RFC 2217 server on 127.0.0.1 (pyserial's PortManager) in front of a PtyBoard.

    Like pyserial's examples/rfc2217_server.py, one client at a time: a thread per direction,
    socket -> PortManager.filter -> pty and pty -> PortManager.escape -> socket.
    """

    def __init__(self, board: FakeBoard | None = None) -> None:
        self.pty = PtyBoard(board)
        self.board = self.pty.board
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"rfc2217://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopping = False
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, name="rfc2217 server",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone won't
        except OSError:
            pass
        self._listener.close()
        for conn in self._connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self.pty.stop()

    def drop_client(self) -> None:
        """Hang up on the connected client (a network outage, the server restarting)."""
        for conn in self._connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = _PtyPort(self.pty.path, timeout=0.05)
        lock = threading.Lock()
        done = threading.Event()

        class Connection:  # PortManager writes its negotiation replies through this
            @staticmethod
            def write(data: bytes) -> None:
                with lock:
                    conn.sendall(data)

        manager = serial.rfc2217.PortManager(port, Connection())

        def pty_to_socket() -> None:
            try:
                while not done.is_set():
                    data = port.read(port.in_waiting or 1)
                    if data:
                        Connection.write(b"".join(manager.escape(data)))
            except (OSError, serial.SerialException):
                pass
            finally:
                done.set()

        pump = threading.Thread(target=pty_to_socket, name="rfc2217 pty->socket", daemon=True)
        pump.start()
        try:
            while not done.is_set():
                data = conn.recv(4096)
                if not data:
                    break
                port.write(b"".join(manager.filter(data)))
        except (OSError, serial.SerialException):
            pass
        finally:
            done.set()
            pump.join(5)
            port.close()
            conn.close()
