"""Sans-I/O codec of the host-board protocol, version 1 (docs/protocol.md).

Bytes in, messages out, and back; no sockets, no serial ports, no clocks. The asyncio client
(`client.py`), the tests and any Python fake board all use this one module, so both directions are
here: the host's requests (HELLO, PING, CLASSIFY, FAULT) and the board's replies (INFO, PONG,
RESULT, ERROR, FAULT_ACK).

Layers, each usable on its own:

    cobs_encode / cobs_decode    Consistent Overhead Byte Stuffing, no delimiter
    encode_frame / decode_frame  COBS(type | seq | length | payload | crc32) 0x00  <->  Frame
    parse / Message.payload()    Frame  <->  typed message (Hello, Info, Result, ...)
    encode / decode              message <-> wire bytes, the two above combined
    FrameDecoder                 incremental: feed(bytes) -> [Message | DecodeError, ...]

Decisions:

* **COBS flavour.** Cheshire & Baker's original encoder (1999): every zero-free run ends with a
  code byte, so a frame whose last run is a positive multiple of 254 bytes ends in a 0x01 block.
  The firmware encoder (firmware/core/fv_proto.c) does the same, so both produce identical bytes
  for the test vectors. The decoders of both accept the other flavour too (no trailing 0x01), as
  any COBS decoder does. Worst case: n + floor(n / 254) + 1 bytes, 3094 for the largest frame.
* **Speed.** A CLASSIFY frame is 3 KB; COBS works on zero-free runs found by `bytes.split` and
  sliced in 254-byte blocks, so the Python loop runs once per run or block (about 13 for an
  image), not once per byte. The decoder finds delimiters with `bytes.find`. Only an image that
  is mostly 0x00 bytes costs one iteration per zero (still well under a millisecond).
* **Errors.** Malformed input from the wire is data, not an exception, inside `FrameDecoder`: it
  yields `DecodeError` events carrying the ERROR code a board answers with (BAD_FRAME,
  BAD_LENGTH, BAD_CRC, UNKNOWN_TYPE) and the header fields when they could be read. The one-shot
  functions raise `FrameError` (a `BoardProtocolError`) carrying the same `DecodeError`. Bad
  arguments from local code (a 3000-byte image, a 65-byte ping) raise ValueError.
* **Length checks.** Checked in the order the spec lists them: COBS and size (BAD_FRAME), length
  field against the frame and the type's maximum (BAD_LENGTH), CRC (BAD_CRC), type
  (UNKNOWN_TYPE). A payload shorter than its type needs (CLASSIFY of 3000 bytes, RESULT of 17) is
  BAD_LENGTH too, as the firmware answers.
* **Buffer bound.** `FrameDecoder` never holds more than MAX_ENCODED (3094) bytes: a 3095th byte
  without a delimiter drops what was buffered, reports BAD_LENGTH once and skips to the next 0x00.
  A full-size CLASSIFY frame is exactly 3094 bytes encoded, so the bound must allow 3094.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from ..errors import BoardProtocolError

PROTOCOL_VERSION = 1

HEADER_SIZE = 5  # type u8 | seq u16 | length u16
CRC_SIZE = 4
MAX_PAYLOAD = 3072
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 3081, decoded
# ceil(3081 / 254) = 13 code bytes; Cheshire & Baker's floor(n / 254) + 1 is also 13 for 3081.
MAX_ENCODED = MAX_FRAME + -(-MAX_FRAME // 254)  # 3094, without the delimiter
MIN_FRAME = HEADER_SIZE + CRC_SIZE  # 9: an empty payload
DELIMITER = b"\x00"

INPUT_BYTES = 32 * 32 * 3  # 3072: one CIFAR-10 image, uint8, HWC, RGB
NUM_CLASSES = 10
MAX_PING = 64
MAX_ERROR_TEXT = 48
MAX_MODEL_ID = 32
INFO_FIXED = 65
BOARD_NAME_SIZE = 16
BOARD_ID_SIZE = 12
MODEL_HASH_SIZE = 8
RESULT_SIZE = NUM_CLASSES + 4 + 4

FLAG_TEST_BUILD = 0x01
FLAG_OPTIMISED = 0x02

# COBS: a code byte announces code - 1 data bytes; 0xFF means 254 bytes and no implied zero.
_BLOCK = 254
_FULL = b"\xff"
_CODES = [bytes((n,)) for n in range(256)]


class MsgType(IntEnum):
    HELLO = 0x01
    PING = 0x02
    CLASSIFY = 0x03
    FAULT = 0x40
    ERROR = 0x7F
    INFO = 0x81
    PONG = 0x82
    RESULT = 0x83
    FAULT_ACK = 0xC0


REPLY = 0x80  # a reply's type is its request's type | 0x80 (ERROR excepted)
REPLY_TO: dict[MsgType, MsgType] = {
    MsgType.HELLO: MsgType.INFO,
    MsgType.PING: MsgType.PONG,
    MsgType.CLASSIFY: MsgType.RESULT,
    MsgType.FAULT: MsgType.FAULT_ACK,
}


class ErrorCode(IntEnum):
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    BUSY = 4
    BAD_FRAME = 5
    TEST_ONLY = 6
    INTERNAL = 7


class FaultKind(IntEnum):
    DROP = 1
    DELAY = 2
    GARBAGE = 3
    BAD_CRC = 4
    RESET = 5
    HANG = 6
    UNPLUG = 7


def _known(enum: type[IntEnum], value: int) -> int:
    """The enum member for `value` when there is one (nicer reprs), else the plain int."""
    try:
        return enum(value)
    except ValueError:
        return value


# --------------------------------------------------------------------------------------- COBS


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode `data` (any bytes); the result holds no 0x00 and no delimiter."""
    out: list[bytes] = []
    for run in bytes(data).split(DELIMITER):
        n = len(run)
        full = n - n % _BLOCK
        for i in range(0, full, _BLOCK):
            out.append(_FULL)
            out.append(run[i : i + _BLOCK])
        # The closing block, possibly empty (code 0x01): it stands for the zero that split
        # this run from the next, or, after the last run, for nothing.
        out.append(_CODES[n - full + 1])
        out.append(run[full:])
    return b"".join(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS block sequence (no delimiter). ValueError when the codes are inconsistent."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise ValueError("empty COBS sequence")
    out: list[bytes] = []
    i = 0
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError(f"0x00 inside a COBS sequence at offset {i}")
        end = i + code
        if end > n:
            raise ValueError(f"COBS block at offset {i} needs {code - 1} bytes, {n - i - 1} left")
        block = data[i + 1 : end]
        if 0 in block:
            raise ValueError(f"0x00 inside a COBS block at offset {i}")
        out.append(block)
        i = end
        # A block shorter than 254 stands for a zero after it, except at the very end, where
        # it is the phantom zero that closed the encoding.
        if code != 0xFF and i < n:
            out.append(DELIMITER)
    return b"".join(out)


# ------------------------------------------------------------------------------------- frames

_HEADER = struct.Struct("<BHH")
_TYPE_SEQ = struct.Struct("<BH")
_CRC = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded, CRC-checked frame: type, sequence number and raw payload."""

    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A frame that was dropped, and why: `code` is the ERROR code a board would answer with.

    `type` and `seq` are those of the header when it could be read (None otherwise); they have
    not passed the CRC, so trust them only to match a request that is outstanding.
    """

    code: ErrorCode
    detail: str
    type: int | None = None
    seq: int | None = None
    size: int = 0  # encoded bytes dropped (without the delimiter)


class FrameError(BoardProtocolError):
    """One-shot decoding failed; `.error` holds the same DecodeError a FrameDecoder would yield."""

    def __init__(self, error: DecodeError) -> None:
        super().__init__(f"{error.code.name}: {error.detail}")
        self.error = error


def frame_bytes(type_: int, seq: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """header | payload | crc32, before COBS: what the CRC and the test vectors' frame_hex cover."""
    if not 0 <= type_ <= 0xFF:
        raise ValueError(f"type {type_} is not a u8")
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq {seq} is not a u16")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD ({MAX_PAYLOAD})")
    body = _HEADER.pack(type_, seq, len(payload)) + bytes(payload)
    return body + _CRC.pack(zlib.crc32(body))


def encode_frame(type_: int, seq: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """The full on-wire bytes of one frame, delimiter included."""
    return cobs_encode(frame_bytes(type_, seq, payload)) + DELIMITER


# The largest payload each type may carry; a type missing here is unknown.
MAX_PAYLOAD_OF: dict[int, int] = {
    MsgType.HELLO: 0,
    MsgType.PING: MAX_PING,
    MsgType.CLASSIFY: INPUT_BYTES,
    MsgType.FAULT: 5,
    MsgType.ERROR: 2 + MAX_ERROR_TEXT,
    MsgType.INFO: INFO_FIXED + MAX_MODEL_ID,
    MsgType.PONG: MAX_PING,
    MsgType.RESULT: RESULT_SIZE,
    MsgType.FAULT_ACK: 0,
}


def check_frame(decoded: bytes, size: int = 0) -> Frame | DecodeError:
    """Checks of a COBS-decoded frame, in the spec's order; never raises."""
    n = len(decoded)
    if n < MIN_FRAME:
        # type and seq are read when present (as the firmware does), so the ERROR can name them
        type_, seq = _TYPE_SEQ.unpack_from(decoded) if n >= _TYPE_SEQ.size else (None, None)
        return DecodeError(ErrorCode.BAD_FRAME, f"frame of {n} bytes, shorter than {MIN_FRAME}",
                           type_, seq, size)
    type_, seq, length = _HEADER.unpack_from(decoded)
    if length != n - MIN_FRAME:
        return DecodeError(ErrorCode.BAD_LENGTH,
                           f"length field {length} but {n - MIN_FRAME} payload bytes",
                           type_, seq, size)
    limit = MAX_PAYLOAD_OF.get(type_, MAX_PAYLOAD)
    if length > limit:
        return DecodeError(ErrorCode.BAD_LENGTH,
                           f"{length} payload bytes, type 0x{type_:02X} takes at most {limit}",
                           type_, seq, size)
    (crc,) = _CRC.unpack_from(decoded, n - CRC_SIZE)
    if zlib.crc32(memoryview(decoded)[: n - CRC_SIZE]) != crc:
        return DecodeError(ErrorCode.BAD_CRC, "crc mismatch", type_, seq, size)
    if type_ not in MAX_PAYLOAD_OF:
        return DecodeError(ErrorCode.UNKNOWN_TYPE, f"unknown type 0x{type_:02X}", type_, seq, size)
    return Frame(type_, seq, decoded[HEADER_SIZE : n - CRC_SIZE])


def _decode_frame(encoded: bytes) -> Frame | DecodeError:
    try:
        decoded = cobs_decode(encoded)
    except ValueError as exc:
        return DecodeError(ErrorCode.BAD_FRAME, f"bad COBS: {exc}", size=len(encoded))
    return check_frame(decoded, len(encoded))


def decode_frame(encoded: bytes | bytearray | memoryview) -> Frame:
    """Decode one encoded frame (with or without its trailing delimiter). Raises FrameError."""
    data = bytes(encoded)
    if data.endswith(DELIMITER):
        data = data[:-1]
    if len(data) > MAX_ENCODED:
        raise FrameError(DecodeError(ErrorCode.BAD_LENGTH,
                                     f"{len(data)} encoded bytes exceed {MAX_ENCODED}",
                                     size=len(data)))
    result = _decode_frame(data)
    if isinstance(result, DecodeError):
        raise FrameError(result)
    return result


# ----------------------------------------------------------------------------------- messages


class Message:
    """Base of the typed messages. Each has a `seq` and knows its TYPE and payload layout."""

    __slots__ = ()
    TYPE: ClassVar[MsgType]
    seq: int

    def payload(self) -> bytes:
        return b""

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Message:
        if payload:
            raise _bad_length(cls.TYPE, f"takes no payload, got {len(payload)} bytes")
        return cls(seq)  # type: ignore[call-arg]


def _bad_length(type_: int, detail: str) -> ValueError:
    """A payload that does not fit its type: `parse` turns it into BAD_LENGTH."""
    return ValueError(f"type 0x{type_:02X} {detail}")


def _ascii(raw: bytes) -> str:
    # The board's text is informational: a stray non-ASCII byte becomes "?" rather than costing
    # the whole message.
    return raw.decode("ascii", errors="replace").replace("\ufffd", "?")


def _ascii_field(text: str, limit: int, what: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > limit:
        raise ValueError(f"{what} {text!r} is longer than {limit} bytes")
    return raw


def _check_seq(seq: int) -> None:
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq {seq} is not a u16")


# Requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    seq: int


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TYPE: ClassVar[MsgType] = MsgType.PING
    seq: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.data) > MAX_PING:
            raise ValueError(f"ping payload of {len(self.data)} bytes, at most {MAX_PING}")

    def payload(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Ping:
        return cls(seq, bytes(payload))


@dataclass(frozen=True, slots=True)
class Classify(Message):
    TYPE: ClassVar[MsgType] = MsgType.CLASSIFY
    seq: int
    pixels: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.pixels) != INPUT_BYTES:
            raise ValueError(f"classify takes {INPUT_BYTES} pixel bytes, got {len(self.pixels)}")

    def payload(self) -> bytes:
        return bytes(self.pixels)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Classify:
        if len(payload) != INPUT_BYTES:
            raise _bad_length(cls.TYPE, f"takes {INPUT_BYTES} bytes, got {len(payload)}")
        return cls(seq, bytes(payload))


_FAULT = struct.Struct("<BI")


@dataclass(frozen=True, slots=True)
class Fault(Message):
    """Test builds only: arm `kind` (a FaultKind) with `arg` for the board's next reply."""

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    seq: int
    kind: int
    arg: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.kind <= 0xFF or not 0 <= self.arg <= 0xFFFFFFFF:
            raise ValueError(f"fault kind {self.kind} / arg {self.arg} out of range (u8 / u32)")

    def payload(self) -> bytes:
        return _FAULT.pack(self.kind, self.arg)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Fault:
        if len(payload) != _FAULT.size:
            raise _bad_length(cls.TYPE, f"takes {_FAULT.size} bytes, got {len(payload)}")
        kind, arg = _FAULT.unpack(payload)
        return cls(seq, _known(FaultKind, kind), arg)


# Replies --------------------------------------------------------------------------------

# offset 0..64 of INFO, see the table in docs/protocol.md
_INFO = struct.Struct("<B3s12s8sIIIIHBBI16sB")
assert _INFO.size == INFO_FIXED


@dataclass(frozen=True, slots=True)
class Info(Message):
    TYPE: ClassVar[MsgType] = MsgType.INFO
    seq: int
    protocol_version: int
    firmware_version: tuple[int, int, int]
    board_id: bytes  # 12 bytes: the STM32's 96-bit unique id
    model_sha256: bytes  # the first 8 bytes of the .tflite's sha256
    macc: int
    arena_bytes: int
    core_clock_hz: int
    link_baud: int  # 0 when the link is not a UART (pty, TCP)
    input_bytes: int
    num_classes: int
    flags: int
    weight_bytes: int
    board_name: str
    model_id: str

    def __post_init__(self) -> None:
        if len(self.board_id) != BOARD_ID_SIZE or len(self.model_sha256) != MODEL_HASH_SIZE:
            raise ValueError("board_id takes 12 bytes and model_sha256 8")

    @property
    def test_build(self) -> bool:
        return bool(self.flags & FLAG_TEST_BUILD)

    @property
    def optimised(self) -> bool:
        return bool(self.flags & FLAG_OPTIMISED)

    def payload(self) -> bytes:
        model_id = _ascii_field(self.model_id, MAX_MODEL_ID, "model id")
        name = _ascii_field(self.board_name, BOARD_NAME_SIZE, "board name")
        return _INFO.pack(
            self.protocol_version, bytes(self.firmware_version), self.board_id,
            self.model_sha256, self.macc, self.arena_bytes, self.core_clock_hz, self.link_baud,
            self.input_bytes, self.num_classes, self.flags, self.weight_bytes,
            name, len(model_id),
        ) + model_id

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Info:
        if len(payload) < INFO_FIXED:
            raise _bad_length(cls.TYPE, f"takes at least {INFO_FIXED} bytes, got {len(payload)}")
        (version, fw, board_id, sha, macc, arena, clock, baud, input_bytes, classes, flags,
         weights, name, n) = _INFO.unpack_from(payload)
        if len(payload) != INFO_FIXED + n or n > MAX_MODEL_ID:
            raise _bad_length(cls.TYPE, f"says a model id of {n} bytes in {len(payload)} bytes")
        return cls(seq, version, (fw[0], fw[1], fw[2]), board_id, sha, macc, arena, clock, baud,
                   input_bytes, classes, flags, weights, _ascii(name.rstrip(b"\x00")),
                   _ascii(payload[INFO_FIXED:]))


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TYPE: ClassVar[MsgType] = MsgType.PONG
    seq: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.data) > MAX_PING:
            raise ValueError(f"pong payload of {len(self.data)} bytes, at most {MAX_PING}")

    def payload(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Pong:
        return cls(seq, bytes(payload))


_RESULT = struct.Struct(f"<{NUM_CLASSES}bII")
assert _RESULT.size == RESULT_SIZE


@dataclass(frozen=True, slots=True)
class Result(Message):
    """The int8 softmax outputs: probability of class i = (scores[i] + 128) / 256."""

    TYPE: ClassVar[MsgType] = MsgType.RESULT
    seq: int
    scores: tuple[int, ...]
    inference_us: int
    inference_cycles: int

    def __post_init__(self) -> None:
        if len(self.scores) != NUM_CLASSES or any(not -128 <= s <= 127 for s in self.scores):
            raise ValueError(f"a result holds {NUM_CLASSES} int8 scores, got {self.scores}")

    @property
    def probabilities(self) -> tuple[float, ...]:
        return tuple((s + 128) / 256 for s in self.scores)

    @property
    def label(self) -> int:
        """The most probable class (the first one on a tie, like numpy's argmax)."""
        return max(range(NUM_CLASSES), key=self.scores.__getitem__)

    def payload(self) -> bytes:
        return _RESULT.pack(*self.scores, self.inference_us, self.inference_cycles)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Result:
        if len(payload) != RESULT_SIZE:
            raise _bad_length(cls.TYPE, f"takes {RESULT_SIZE} bytes, got {len(payload)}")
        *scores, us, cycles = _RESULT.unpack(payload)
        return cls(seq, tuple(scores), us, cycles)


@dataclass(frozen=True, slots=True)
class Error(Message):
    """The board rejected a frame. `seq` is the rejected header's (0 when none could be read)."""

    TYPE: ClassVar[MsgType] = MsgType.ERROR
    seq: int
    code: int
    request_type: int = 0
    text: str = ""

    def payload(self) -> bytes:
        text = _ascii_field(self.text, MAX_ERROR_TEXT, "error text")
        return bytes((self.code, self.request_type)) + text

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Error:
        if len(payload) < 2:
            raise _bad_length(cls.TYPE, f"takes at least 2 bytes, got {len(payload)}")
        return cls(seq, _known(ErrorCode, payload[0]), payload[1], _ascii(payload[2:]))


@dataclass(frozen=True, slots=True)
class FaultAck(Message):
    TYPE: ClassVar[MsgType] = MsgType.FAULT_ACK
    seq: int


Request = Hello | Ping | Classify | Fault
Reply = Info | Pong | Result | Error | FaultAck

MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, Ping, Classify, Fault, Info, Pong, Result, Error, FaultAck)
}


def parse_or_error(frame: Frame, size: int = 0) -> Message | DecodeError:
    """The typed message of a checked frame, or the DecodeError its payload earns."""
    cls = MESSAGE_TYPES.get(frame.type)
    if cls is None:
        return DecodeError(ErrorCode.UNKNOWN_TYPE, f"unknown type 0x{frame.type:02X}",
                           frame.type, frame.seq, size)
    try:
        return cls.from_payload(frame.seq, frame.payload)
    except ValueError as exc:
        return DecodeError(ErrorCode.BAD_LENGTH, str(exc), frame.type, frame.seq, size)


def parse(frame: Frame) -> Message:
    """The typed message of a checked frame. Raises FrameError."""
    result = parse_or_error(frame)
    if isinstance(result, DecodeError):
        raise FrameError(result)
    return result


def encode(msg: Message) -> bytes:
    """The full on-wire bytes of a message, delimiter included."""
    _check_seq(msg.seq)
    return encode_frame(msg.TYPE, msg.seq, msg.payload())


def decode(encoded: bytes | bytearray | memoryview) -> Message:
    """The message in one encoded frame (delimiter optional). Raises FrameError."""
    return parse(decode_frame(encoded))


# ------------------------------------------------------------------------------ incremental


Event = Message | DecodeError


class FrameDecoder:
    """Incremental decoder: `feed` any split of the byte stream, get messages and errors back.

    It buffers at most MAX_ENCODED bytes of an unfinished frame. Bytes before the first 0x00 of
    a stream (the receiver started mid-frame) come out as one DecodeError, after which the
    decoder is in sync. Empty frames (0x00 0x00) are ignored: they are the host's flush.
    """

    __slots__ = ("_buf", "_skipping")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # an overlong frame was dropped: discard up to the next 0x00

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held now (never more than MAX_ENCODED)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any unfinished frame (the next byte starts a new one)."""
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        data = bytes(data)
        start = 0
        end = len(data)
        while start < end:
            stop = data.find(0, start)
            if stop < 0:
                self._store(data, start, end, events)
                break
            if self._skipping:
                self._skipping = False
            else:
                size = len(self._buf) + stop - start
                if size > MAX_ENCODED:
                    # Only reachable when the whole run arrived in this call after a partial
                    # one: report it like an overflow, the bytes are not stored.
                    events.append(self._overflow(size))
                elif size:
                    if self._buf:
                        self._buf += data[start:stop]
                        encoded = bytes(self._buf)
                    else:
                        encoded = data[start:stop]
                    checked = _decode_frame(encoded)
                    events.append(parse_or_error(checked, size)
                                  if isinstance(checked, Frame) else checked)
            self._buf.clear()
            start = stop + 1
        return events

    def _store(self, data: bytes, start: int, end: int, events: list[Event]) -> None:
        """Keep an unfinished frame's bytes, unless that would exceed MAX_ENCODED."""
        if self._skipping:
            return
        size = len(self._buf) + end - start
        if size > MAX_ENCODED:
            events.append(self._overflow(size))
            self._buf.clear()
            self._skipping = True
        else:
            self._buf += data[start:end]

    @staticmethod
    def _overflow(size: int) -> DecodeError:
        return DecodeError(ErrorCode.BAD_LENGTH,
                           f"{size} bytes without a delimiter exceed {MAX_ENCODED}: dropped",
                           size=size)
