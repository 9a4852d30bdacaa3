"""Write protocol.json: the test vectors of protocol v1, shared by the Python and C codecs.

    python tests/vectors/make_vectors.py          # rewrite protocol.json beside this script
    python tests/vectors/make_vectors.py --check  # exit 1 if protocol.json differs

The file is written once and committed: both codecs are tested against it, so a change to the
wire format shows up as a failing test on both sides, not as a silently regenerated file.

Each entry of "frames" is self-describing: name, direction ("request": host to board, "reply":
board to host), type, type_name, seq, payload_hex (the payload alone), frame_hex (header |
payload | crc32, before COBS) and wire_hex (the bytes on the wire: COBS and the 0x00 delimiter),
plus the decoded fields of the payload. Each entry of "rejects" is wire bytes a receiver must
drop, with the ERROR code, seq and type a board answers with (seq 0 and type 0 when the header
could not be read).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import zlib
from enum import IntEnum
from pathlib import Path
from typing import Any

from fleetvote.link import codec
from fleetvote.link.codec import (
    Classify,
    Error,
    ErrorCode,
    Fault,
    FaultAck,
    FaultKind,
    Hello,
    Info,
    Message,
    MsgType,
    Ping,
    Pong,
    Result,
)

OUT = Path(__file__).with_name("protocol.json")


def _json_value(value: Any) -> Any:
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def fields_of(msg: Message) -> dict[str, Any]:
    """The decoded payload fields (bytes as hex), without seq, which has its own key."""
    return {f.name: _json_value(getattr(msg, f.name))
            for f in dataclasses.fields(msg)  # type: ignore[arg-type]
            if f.name not in ("seq", "pixels", "data")}


def frame_vector(name: str, msg: Message) -> dict[str, Any]:
    payload = msg.payload()
    return {
        "name": name,
        "direction": "reply" if msg.TYPE & codec.REPLY or msg.TYPE == MsgType.ERROR
        else "request",
        "type": int(msg.TYPE),
        "type_name": msg.TYPE.name,
        "seq": msg.seq,
        "payload_hex": payload.hex(),
        "frame_hex": codec.frame_bytes(msg.TYPE, msg.seq, payload).hex(),
        "wire_hex": codec.encode(msg).hex(),
        "fields": fields_of(msg),
    }


def cobs_edge_pixels() -> bytes:
    """An image whose CLASSIFY frame has a zero-free run of exactly 254 bytes in the middle and
    at the end: the two places where COBS encoders differ (the end gets a 0x01 block)."""
    pixels = bytearray(b"\x01" * codec.INPUT_BYTES)
    # frame offsets: header 0..4 (byte 3, the length's low byte 0x00, is a zero), pixel p at 5+p
    pixels[253] = 0  # frame offset 258: the run 4..257 between two zeros is 254 bytes
    pixels[2821] = 0  # frame offset 2826: the run 2827..3080 to the end is 254 bytes
    for tweak in range(1, 256):  # a pixel value that keeps the CRC free of 0x00 bytes
        pixels[1000] = tweak
        frame = codec.frame_bytes(MsgType.CLASSIFY, 6, bytes(pixels))
        if 0 not in frame[-codec.CRC_SIZE:]:
            return bytes(pixels)
    raise AssertionError("no pixel value gives a zero-free CRC")


def reject(name: str, wire: bytes, code: ErrorCode, seq: int, type_: int,
           note: str) -> dict[str, Any]:
    return {"name": name, "wire_hex": wire.hex(), "code": int(code), "code_name": code.name,
            "seq": seq, "type": type_, "note": note}


def _raw_frame(type_: int, seq: int, length: int, payload: bytes, crc_xor: int = 0) -> bytes:
    """A frame with any length field and CRC, then COBS and the delimiter."""
    body = bytes((type_,)) + seq.to_bytes(2, "little") + length.to_bytes(2, "little") + payload
    crc = (zlib.crc32(body) ^ crc_xor).to_bytes(4, "little")
    return codec.cobs_encode(body + crc) + codec.DELIMITER


def build() -> dict[str, Any]:
    info = Info(seq=1, protocol_version=1, firmware_version=(0, 1, 0),
                board_id=bytes.fromhex("0123456789abcdef01234567"),
                model_sha256=bytes.fromhex("fedcba9876543210"), macc=1_234_567,
                arena_bytes=45_678, core_clock_hz=100_000_000, link_baud=921_600,
                input_bytes=3072, num_classes=10, flags=0b11, weight_bytes=98_765,
                board_name="nucleo-f411re", model_id="cnn-s-int8")
    frames = [
        frame_vector("hello", Hello(1)),
        frame_vector("ping_abc", Ping(2, b"abc")),
        frame_vector("classify_ramp", Classify(3, bytes(i % 256 for i in range(3072)))),
        frame_vector("fault_delay", Fault(5, FaultKind.DELAY, 250)),
        frame_vector("classify_cobs_edges", Classify(6, cobs_edge_pixels())),
        frame_vector("ping_zeros", Ping(7, bytes(64))),
        frame_vector("hello_seq_max", Hello(0xFFFF)),
        frame_vector("info", info),
        frame_vector("pong_abc", Pong(2, b"abc")),
        frame_vector("result", Result(3, (-128, -1, 0, 1, 127, 5, -5, 64, -64, 100),
                                      1_234, 5_678_901)),
        frame_vector("error_bad_crc", Error(4, ErrorCode.BAD_CRC, MsgType.CLASSIFY,
                                            "crc mismatch")),
        frame_vector("error_unreadable", Error(0, ErrorCode.BAD_FRAME, 0, "bad cobs framing")),
        frame_vector("fault_ack", FaultAck(5)),
    ]
    # The payload fields of a PING/PONG and CLASSIFY are their payload_hex.
    hello = codec.frame_bytes(MsgType.HELLO, 8, b"")
    rejects = [
        reject("bad_crc", _raw_frame(MsgType.HELLO, 8, 0, b"", crc_xor=1),
               ErrorCode.BAD_CRC, 8, MsgType.HELLO, "HELLO whose CRC has its lowest bit flipped"),
        reject("length_disagrees", _raw_frame(MsgType.PING, 9, 4, b"abc"),
               ErrorCode.BAD_LENGTH, 9, MsgType.PING,
               "length field 4, 3 payload bytes (CRC correct over what was sent)"),
        reject("ping_over_64", _raw_frame(MsgType.PING, 10, 65, bytes(range(1, 66))),
               ErrorCode.BAD_LENGTH, 10, MsgType.PING, "PING of 65 bytes, at most 64"),
        reject("classify_short", _raw_frame(MsgType.CLASSIFY, 11, 3071, b"\x80" * 3071),
               ErrorCode.BAD_LENGTH, 11, MsgType.CLASSIFY,
               "CLASSIFY of 3071 bytes: under the 3072 it takes (the spec only says 'exceeds "
               "the type's maximum'; the firmware and the Python codec reject it too)"),
        reject("unknown_type", _raw_frame(0x05, 12, 0, b""),
               ErrorCode.UNKNOWN_TYPE, 12, 0x05, "type 0x05, valid CRC"),
        reject("short_frame", codec.cobs_encode(hello[:8]) + codec.DELIMITER,
               ErrorCode.BAD_FRAME, 8, MsgType.HELLO,
               "HELLO cut to 8 decoded bytes, under the 9 of an empty frame; type and seq "
               "are still readable"),
        reject("bad_cobs", bytes((0xFE,)) + codec.cobs_encode(hello)[1:] + codec.DELIMITER,
               ErrorCode.BAD_FRAME, 0, 0, "first code byte 0xFE points past the delimiter"),
    ]
    return {
        "protocol_version": codec.PROTOCOL_VERSION,
        "description": "protocol v1 test vectors (docs/protocol.md); written by "
                       "tests/vectors/make_vectors.py, checked by the Python and C codecs",
        "framing": "wire = COBS(header | payload | crc32) 0x00; header = type u8 | seq u16 LE | "
                   "length u16 LE; crc32 = zlib crc32 (CRC-32/ISO-HDLC) of header and payload, "
                   "u32 LE. COBS as Cheshire & Baker 1999: a zero-free run that ends the frame "
                   "and is a positive multiple of 254 bytes long gets a final 0x01 block "
                   "(decoders accept either form)",
        "limits": {"max_payload": codec.MAX_PAYLOAD, "max_frame": codec.MAX_FRAME,
                   "max_encoded": codec.MAX_ENCODED},
        "frames": frames,
        "rejects": rejects,
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'DIFFERS'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
