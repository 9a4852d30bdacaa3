"""The link to one board: protocol v1 codec (sans-I/O) and the asyncio client over it.

    codec   bytes <-> frames <-> typed messages; FrameDecoder for a byte stream (no I/O)
    client  BoardClient: one board over a tty, socket:// or rfc2217:// URL
"""

from .client import BoardClient, LinkCounters, Timeouts
from .codec import (
    MAX_ENCODED,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    Classify,
    DecodeError,
    Error,
    ErrorCode,
    Fault,
    FaultAck,
    FaultKind,
    Frame,
    FrameDecoder,
    FrameError,
    Hello,
    Info,
    Message,
    MsgType,
    Ping,
    Pong,
    Result,
    decode,
    encode,
)

__all__ = [
    "MAX_ENCODED", "MAX_PAYLOAD", "PROTOCOL_VERSION", "BoardClient", "Classify", "DecodeError",
    "Error", "ErrorCode", "Fault", "FaultAck", "FaultKind", "Frame", "FrameDecoder", "FrameError",
    "Hello", "Info", "LinkCounters", "Message", "MsgType", "Ping", "Pong", "Result", "Timeouts",
    "decode", "encode",
]
