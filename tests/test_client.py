"""The asyncio board client (fleetvote.link.client) against a fake board on real links: a pty
(the board's end in raw mode), a TCP socket (socket://) and pyserial's RFC 2217 server
(rfc2217://), all on this machine. The fake board is tests/fakeboard.py."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from fakeboard import FakeBoard, PtyBoard, Rfc2217Board, TcpBoard, default_info, scores_for
from fleetvote.errors import (
    BoardError,
    BoardGone,
    BoardProtocolError,
    BoardRejected,
    BoardTimeout,
    ConfigError,
)
from fleetvote.link import codec
from fleetvote.link.client import BoardClient, Timeouts, image_bytes, next_seq
from fleetvote.link.codec import Classify, Error, ErrorCode, FaultKind, FrameError, Hello, Message

# Deadlines short enough for a fast suite, long enough for a loaded CI machine.
FAST = Timeouts(open=3.0, hello=1.0, ping=1.0, classify=1.0, fault=1.0, close=3.0)
SHORT = 0.25  # for requests that are meant to time out

RNG = np.random.default_rng(7)
IMAGE_A = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
IMAGE_B = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)


class EchoBoard(FakeBoard):
    """A tty left in cooked mode: the host's own frames come back."""

    def _answer(self, msg: Message) -> Message:
        return msg


@pytest.fixture
def pty_board() -> Iterator[PtyBoard]:
    board = PtyBoard()
    yield board
    board.stop()


@pytest.fixture
async def client(pty_board: PtyBoard) -> AsyncIterator[BoardClient]:
    client = await BoardClient.open(pty_board.path, FAST)
    yield client
    await client.close()


def with_timeouts(client: BoardClient, **changes: float) -> None:
    client.timeouts = dataclasses.replace(client.timeouts, **changes)


async def settle() -> None:
    """Let bytes in flight on the pty reach the client's decoder."""
    await asyncio.sleep(0.05)


# ----------------------------------------------------------------------- happy paths


async def test_hello_returns_the_board_info_and_keeps_it(client: BoardClient) -> None:
    info = await client.hello()
    assert info == dataclasses.replace(default_info(), seq=info.seq)
    assert client.info == info and info.test_build


async def test_classify_returns_the_boards_result_for_arrays_and_bytes(
        client: BoardClient) -> None:
    result = await client.classify(IMAGE_A)
    assert result.scores == scores_for(IMAGE_A.tobytes())
    again = await client.classify(IMAGE_B.tobytes())
    assert again.scores == scores_for(IMAGE_B.tobytes())
    assert client.counters.requests == 2 and client.counters.timeouts == 0


async def test_ping_echoes_its_payload_and_measures_round_trip(client: BoardClient) -> None:
    elapsed = await client.ping(b"\x00\xffzero and IAC")
    assert 0 < elapsed < FAST.ping


async def test_wrong_images_are_refused_before_anything_is_sent(client: BoardClient,
                                                                pty_board: PtyBoard) -> None:
    for bad in (IMAGE_A.astype(np.float32), IMAGE_A[:16], b"\x00" * 3071):
        with pytest.raises(ValueError):
            await client.classify(bad)
    assert image_bytes(IMAGE_A.reshape(-1)) == IMAGE_A.tobytes()
    await settle()
    assert not pty_board.board.received


async def test_concurrent_requests_are_sent_one_at_a_time(client: BoardClient) -> None:
    await client.fault(FaultKind.DELAY, 100)  # the first reply comes late: requests overlap
    payloads = [bytes([i]) * i for i in range(1, 9)]
    await asyncio.gather(*(client.ping(p) for p in payloads))
    assert client.counters.timeouts == 0 and client.counters.dropped_late_replies == 0


# ------------------------------------------------------------------------- framing


async def test_first_request_after_open_is_preceded_by_a_lone_flush_byte(
        client: BoardClient, pty_board: PtyBoard) -> None:
    await client.hello()
    await client.ping(b"x")
    sent = bytes(pty_board.board.received)
    first, second = (codec.encode(m) for m in pty_board.board.requests)
    assert sent == b"\x00" + first + second


async def test_flush_byte_resyncs_a_board_holding_half_a_frame(pty_board: PtyBoard) -> None:
    half = codec.encode(Classify(1234, IMAGE_A.tobytes()))[:1500]
    pty_board.board.feed(half)  # what a board kept from a host that died mid-frame
    async with await BoardClient.open(pty_board.path, FAST) as client:
        await client.hello()
    assert len(pty_board.board.errors) == 1  # the half frame, dropped at the flush


async def test_noise_from_a_booting_board_is_skipped(client: BoardClient,
                                                     pty_board: PtyBoard) -> None:
    pty_board.inject(b"U-Boot 2024.01\r\nbooting...\r\n")  # no 0x00: an unfinished 'frame'
    await settle()
    assert (await client.hello()).board_name == "host"


async def test_garbage_before_reply_is_skipped(client: BoardClient,
                                               pty_board: PtyBoard) -> None:
    pty_board.board.prefix_next_reply(b"\x13\x37garbage\xff\x00")
    assert (await client.classify(IMAGE_A)).scores == scores_for(IMAGE_A.tobytes())
    assert client.counters.decode_errors == 1


async def test_garbage_fault_is_skipped_and_the_reply_still_read(client: BoardClient) -> None:
    # GARBAGE sends non-zero noise and a delimiter, then the reply: the host drops one bad
    # frame and resynchronises in time for the reply (docs/protocol.md).
    await client.fault(FaultKind.GARBAGE, 100)
    await client.hello()
    assert client.counters.decode_errors == 1


async def test_stray_error_without_seq_is_counted_not_raised(client: BoardClient,
                                                             pty_board: PtyBoard) -> None:
    stray = codec.encode(Error(0, ErrorCode.BAD_FRAME, 0, "bad cobs framing"))
    pty_board.board.prefix_next_reply(stray)
    await client.hello()
    assert client.counters.stray_errors == 1


# ------------------------------------------------------------------- late and lost replies


async def test_late_reply_is_dropped_not_taken_for_next_request(client: BoardClient) -> None:
    await client.fault(FaultKind.DELAY, 500)
    with_timeouts(client, classify=SHORT)
    with pytest.raises(BoardTimeout):
        await client.classify(IMAGE_A)
    # B is outstanding when A's late result arrives; A's scores must not come back for B
    with_timeouts(client, classify=FAST.classify + 0.5)
    result = await client.classify(IMAGE_B)
    assert result.scores == scores_for(IMAGE_B.tobytes()) != scores_for(IMAGE_A.tobytes())
    assert client.counters.dropped_late_replies == 1 and client.counters.timeouts == 1


async def test_timeout_raises_board_timeout(client: BoardClient, pty_board: PtyBoard) -> None:
    await client.fault(FaultKind.DROP)
    with_timeouts(client, ping=SHORT)
    start = time.monotonic()
    with pytest.raises(BoardTimeout) as info:
        await client.ping(b"p")
    assert SHORT <= time.monotonic() - start < SHORT + 0.5
    assert pty_board.path in str(info.value) and info.value.url == pty_board.path
    assert isinstance(info.value.__cause__, TimeoutError)
    assert client.counters.timeouts == 1
    await client.ping(b"after")  # the link is still good


async def test_per_call_timeout_replaces_the_phase_default(client: BoardClient) -> None:
    await client.fault(FaultKind.DROP)
    start = time.monotonic()
    with pytest.raises(BoardTimeout, match=r"within 0\.1 s"):
        await client.classify(IMAGE_A, timeout=0.1)  # the phase default is 1 s
    assert time.monotonic() - start < 0.5
    for bad in (0, -1):
        with pytest.raises(ValueError):
            await client.ping(timeout=bad)


async def test_deadline_covers_the_wait_for_a_busy_link(client: BoardClient) -> None:
    await client.fault(FaultKind.DELAY, 400)
    first = asyncio.create_task(client.ping(b"slow"))
    await asyncio.sleep(0.05)
    with pytest.raises(BoardTimeout, match="busy"):
        await client.ping(b"queued", timeout=0.1)
    await first
    assert client.counters.timeouts == 0 and client.counters.requests == 2


async def test_hung_board_times_out_every_request(client: BoardClient) -> None:
    await client.fault(FaultKind.HANG)
    with_timeouts(client, ping=SHORT)
    for _ in range(2):
        with pytest.raises(BoardTimeout):
            await client.ping()
    assert client.counters.timeouts == 2


async def test_reset_mid_reply_costs_one_request(client: BoardClient) -> None:
    await client.fault(FaultKind.RESET)
    with_timeouts(client, hello=SHORT)
    with pytest.raises(BoardTimeout):
        await client.hello()
    await client.hello()


async def test_corrupt_reply_fails_fast_as_protocol_error(client: BoardClient) -> None:
    await client.fault(FaultKind.BAD_CRC)
    start = time.monotonic()
    with pytest.raises(BoardProtocolError, match="BAD_CRC") as info:
        await client.classify(IMAGE_A)
    assert time.monotonic() - start < FAST.classify / 2  # the header named the request
    assert isinstance(info.value.__cause__, FrameError)
    await client.classify(IMAGE_A)


async def test_cancelled_request_propagates_and_leaves_the_client_usable(
        client: BoardClient) -> None:
    await client.fault(FaultKind.DELAY, 300)
    task = asyncio.create_task(client.classify(IMAGE_A))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with_timeouts(client, classify=FAST.classify + 0.5)
    assert (await client.classify(IMAGE_B)).scores == scores_for(IMAGE_B.tobytes())
    assert client.counters.dropped_late_replies == 1 and client.counters.timeouts == 0


# ------------------------------------------------------------------- errors and rejections


async def test_error_reply_raises_board_rejected_with_its_code(pty_board: PtyBoard) -> None:
    pty_board.board.test_build = False  # a release build
    async with await BoardClient.open(pty_board.path, FAST) as client:
        with pytest.raises(BoardRejected) as info:
            await client.fault(FaultKind.DROP)
        assert info.value.code == ErrorCode.TEST_ONLY and "TEST_ONLY" in str(info.value)
        await client.ping()


async def test_echoing_tty_is_a_protocol_error(pty_board: PtyBoard) -> None:
    pty_board.board = EchoBoard()
    async with await BoardClient.open(pty_board.path, FAST) as client:
        with pytest.raises(BoardProtocolError, match="echoing"):
            await client.hello()


async def test_other_protocol_version_is_a_protocol_error(pty_board: PtyBoard) -> None:
    pty_board.board = FakeBoard(info=dataclasses.replace(default_info(), protocol_version=2))
    async with await BoardClient.open(pty_board.path, FAST) as client:
        with pytest.raises(BoardProtocolError, match="protocol 2"):
            await client.hello()
        assert client.info is None


async def test_closed_port_raises_board_gone(client: BoardClient, pty_board: PtyBoard) -> None:
    await client.hello()
    pty_board.unplug()
    with pytest.raises(BoardGone) as info:
        await client.ping()
    assert pty_board.path in str(info.value)
    with pytest.raises(BoardGone):  # and stays gone, without waiting
        await client.ping()
    assert client.is_closed


async def test_unplug_while_waiting_raises_board_gone_not_timeout(client: BoardClient) -> None:
    await client.fault(FaultKind.UNPLUG)
    start = time.monotonic()
    with pytest.raises(BoardGone):
        await client.classify(IMAGE_A)
    assert time.monotonic() - start < FAST.classify / 2


async def test_close_fails_the_request_in_flight_and_later_ones(client: BoardClient) -> None:
    await client.fault(FaultKind.DROP)
    task = asyncio.create_task(client.ping())
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(BoardGone, match="closed"):
        await task
    with pytest.raises(BoardGone):
        await client.hello()
    await client.close()  # idempotent


async def test_port_is_released_on_close(pty_board: PtyBoard) -> None:
    for _ in range(3):  # the tty is opened exclusively: a leaked handle would refuse the next
        async with await BoardClient.open(pty_board.path, FAST) as client:
            await client.ping()


async def test_second_client_on_the_same_tty_is_refused(client: BoardClient,
                                                        pty_board: PtyBoard) -> None:
    with pytest.raises(BoardGone, match="lock"):
        await BoardClient.open(pty_board.path, FAST)


async def test_missing_tty_raises_board_gone() -> None:
    with pytest.raises(BoardGone) as info:
        await BoardClient.open("/dev/fleetvote-no-such-board", FAST)
    assert isinstance(info.value.__cause__, OSError)


async def test_unsupported_url_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        await BoardClient.open("spy:///dev/ttyACM0", FAST)


def test_every_board_error_is_a_board_error() -> None:
    for cls in (BoardTimeout, BoardProtocolError, BoardRejected, BoardGone, FrameError):
        assert issubclass(cls, BoardError)


# ------------------------------------------------------------------------- sequence numbers


def test_sequence_numbers_wrap_past_zero() -> None:
    assert [next_seq(s) for s in (0, 1, 0xFFFE, 0xFFFF)] == [1, 2, 0xFFFF, 1]


async def test_client_wraps_its_sequence_without_using_zero(client: BoardClient,
                                                            pty_board: PtyBoard) -> None:
    client._seq = 0xFFFE
    for _ in range(3):
        await client.ping()
    assert [m.seq for m in pty_board.board.requests] == [0xFFFF, 1, 2]


async def test_sequence_starts_differ_between_opens(pty_board: PtyBoard) -> None:
    for _ in range(4):
        async with await BoardClient.open(pty_board.path, FAST) as client:
            await client.ping()
    seqs = {m.seq for m in pty_board.board.requests}
    assert len(seqs) > 1  # 4 equal random starts: odds 2**-48


# ---------------------------------------------------------------------------- socket://


@pytest.fixture
async def tcp_board() -> AsyncIterator[TcpBoard]:
    board = await TcpBoard().start()
    yield board
    await board.stop()


async def test_socket_url_classifies_over_tcp(tcp_board: TcpBoard) -> None:
    async with await BoardClient.open(tcp_board.url, FAST) as client:
        assert (await client.hello()).board_name == "host"
        assert (await client.classify(IMAGE_A)).scores == scores_for(IMAGE_A.tobytes())
        await client.ping(b"\x00\x00")


async def test_socket_late_reply_is_dropped(tcp_board: TcpBoard) -> None:
    async with await BoardClient.open(tcp_board.url, FAST) as client:
        await client.fault(FaultKind.DELAY, 400)
        with_timeouts(client, ping=SHORT)
        with pytest.raises(BoardTimeout):
            await client.ping(b"late")
        with_timeouts(client, ping=FAST.ping)
        await client.ping(b"fresh")
        assert client.counters.dropped_late_replies == 1


async def test_socket_board_hanging_up_raises_board_gone(tcp_board: TcpBoard) -> None:
    async with await BoardClient.open(tcp_board.url, FAST) as client:
        await client.fault(FaultKind.UNPLUG)
        with pytest.raises(BoardGone, match=r"127\.0\.0\.1"):
            await client.hello()


async def test_socket_refused_raises_board_gone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # bound, then closed: nobody listens there
    with pytest.raises(BoardGone) as info:
        await BoardClient.open(f"socket://127.0.0.1:{port}", FAST)
    assert isinstance(info.value.__cause__, OSError)


# --------------------------------------------------------------------------- rfc2217://


@pytest.fixture
def rfc2217_board() -> Iterator[Rfc2217Board]:
    board = Rfc2217Board()
    yield board
    board.stop()


async def test_rfc2217_url_round_trips_through_pyserials_port_manager(
        rfc2217_board: Rfc2217Board) -> None:
    async with await BoardClient.open(rfc2217_board.url, FAST, baudrate=921_600) as client:
        assert (await client.hello()).board_name == "host"
        ramp = bytes(i % 256 for i in range(3072))  # 0xFF bytes: Telnet IAC, escaped on the way
        assert (await client.classify(ramp)).scores == scores_for(ramp)
        await client.ping(b"\xff\xff\x00\xff")
        await client.fault(FaultKind.DELAY, 400)
        with_timeouts(client, ping=SHORT)
        with pytest.raises(BoardTimeout):
            await client.ping(b"late")
        with_timeouts(client, ping=FAST.ping)
        await client.ping(b"fresh")
        assert client.counters.dropped_late_replies == 1
    assert [type(m) for m in rfc2217_board.board.requests[:2]] == [Hello, Classify]


async def test_rfc2217_server_hanging_up_raises_board_gone(
        rfc2217_board: Rfc2217Board) -> None:
    client = await BoardClient.open(rfc2217_board.url, FAST)
    await client.ping()
    rfc2217_board.drop_client()
    with pytest.raises(BoardGone, match="rfc2217://"):
        await client.ping()
    await client.close()


async def test_open_deadline_raises_board_timeout() -> None:
    # A TCP peer that accepts but never negotiates RFC 2217: pyserial would wait 1 s (the
    # URL's timeout option); the client's open deadline is shorter.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"rfc2217://127.0.0.1:{silent.getsockname()[1]}?timeout=1"
        with pytest.raises(BoardTimeout, match="not open"):
            await BoardClient.open(url, dataclasses.replace(FAST, open=0.2))


async def test_a_write_to_an_unplugged_port_is_one_log_line_not_a_traceback(caplog):
    import logging
    import os

    import serial_asyncio_fast

    from fleetvote.link.client import quiet_link_errors

    loop = asyncio.get_running_loop()

    async def write_after_unplug() -> None:
        master, slave = os.openpty()
        lost = loop.create_future()

        class Proto(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        transport, _ = await serial_asyncio_fast.create_serial_connection(loop, Proto, os.ttyname(slave))
        os.close(master)  # the board goes away: writes on the slave now fail with EIO
        transport.write(b"\x00" * 64)
        await asyncio.wait_for(lost, 5)
        os.close(slave)

    caplog.set_level(logging.INFO)
    restore = quiet_link_errors(loop)
    try:
        await write_after_unplug()
    finally:
        restore()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("closed and reopened" in r.getMessage() for r in caplog.records)
    caplog.clear()
    await write_after_unplug()  # restored: the loop's own handler reports it, as before
    assert any("Fatal write error" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
