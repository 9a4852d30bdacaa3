"""The protocol v1 codec (fleetvote.link.codec): COBS, frames, messages, the stream decoder and
the shared test vectors. The reference COBS below is the textbook byte loop, written apart from
the codec's run-based one, so the two check each other."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetvote.errors import BoardProtocolError
from fleetvote.link import codec
from fleetvote.link.codec import (
    MAX_ENCODED,
    MAX_FRAME,
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
)
from vectors.make_vectors import fields_of, render  # tests/ is on sys.path, as for synth

VECTORS = Path(__file__).parent / "vectors" / "protocol.json"


# ---------------------------------------------------------------- reference COBS (textbook)


def ref_cobs_encode(data: bytes) -> bytes:
    """Cheshire & Baker's StuffData, byte by byte."""
    out = bytearray([0])
    code_at, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def ref_cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        assert code != 0 and i + code <= len(data), "inconsistent COBS"
        out += data[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def events(decoder: FrameDecoder, *chunks: bytes) -> list[object]:
    found: list[object] = []
    for chunk in chunks:
        found += decoder.feed(chunk)
        assert decoder.buffered <= MAX_ENCODED
    return found


# -------------------------------------------------------------------------------- COBS


@pytest.mark.parametrize(("raw", "encoded"), [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    # a zero-free run of 254 at the end keeps its closing 0x01 block (Cheshire & Baker, and the
    # firmware's encoder); one in the middle needs it anyway
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255)) + b"\x01"),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
])
def test_cobs_matches_known_encodings(raw: bytes, encoded: bytes) -> None:
    assert codec.cobs_encode(raw) == encoded
    assert codec.cobs_decode(encoded) == raw


def test_cobs_decoder_accepts_the_form_without_a_final_empty_block() -> None:
    assert codec.cobs_decode(b"\xff" + bytes(range(1, 255))) == bytes(range(1, 255))


@pytest.mark.parametrize("bad", [b"", b"\x05\x11\x22", b"\x02\x11\x00", b"\x00", b"\x03\x11"])
def test_cobs_decoder_rejects_inconsistent_codes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        codec.cobs_decode(bad)


@given(st.binary(max_size=4000))
def test_cobs_round_trips_and_matches_the_textbook_encoder(data: bytes) -> None:
    encoded = codec.cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert encoded == ref_cobs_encode(data)
    assert codec.cobs_decode(encoded) == data == ref_cobs_decode(encoded)


@given(st.lists(st.sampled_from([b"\x00", b"\x01", b"\x01" * 253, b"\x02" * 254, b"\x03" * 255]),
                max_size=12))
def test_cobs_round_trips_runs_around_the_254_block_size(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert codec.cobs_decode(codec.cobs_encode(data)) == data
    assert codec.cobs_encode(data) == ref_cobs_encode(data)


# ------------------------------------------------------------------------------ frames


@given(type_=st.integers(0, 255), seq=st.integers(0, 0xFFFF),
       payload=st.binary(max_size=codec.MAX_PAYLOAD))
def test_frame_round_trips_for_any_type_seq_and_payload(type_: int, seq: int,
                                                         payload: bytes) -> None:
    wire = codec.encode_frame(type_, seq, payload)
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    assert len(wire) - 1 <= MAX_ENCODED
    body = ref_cobs_decode(wire[:-1])
    header = bytes([type_]) + seq.to_bytes(2, "little") + len(payload).to_bytes(2, "little")
    assert body[:5] == header
    assert int.from_bytes(body[-4:], "little") == zlib.crc32(body[:-4])
    if type_ in codec.MAX_PAYLOAD_OF and len(payload) <= codec.MAX_PAYLOAD_OF[type_]:
        assert codec.decode_frame(wire) == Frame(type_, seq, payload)


def test_largest_frame_encodes_to_exactly_max_encoded_and_decodes() -> None:
    wire = codec.encode(Classify(0x0101, b"\x80" * 3072))  # zero-free but for the length byte
    assert len(wire) - 1 == MAX_ENCODED == 3094
    assert codec.decode(wire) == Classify(0x0101, b"\x80" * 3072)
    for chunks in ([wire], [wire[:-1], wire[-1:]], [wire[:1000], wire[1000:]]):
        assert events(FrameDecoder(), *chunks) == [Classify(0x0101, b"\x80" * 3072)]


def test_encode_frame_refuses_payload_over_max() -> None:
    with pytest.raises(ValueError):
        codec.encode_frame(MsgType.CLASSIFY, 1, bytes(codec.MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        codec.encode_frame(MsgType.HELLO, 0x10000)


def _decode_error(wire: bytes) -> DecodeError:
    with pytest.raises(FrameError) as info:
        codec.decode(wire)
    assert isinstance(info.value, BoardProtocolError)
    return info.value.error


def test_bad_crc_is_reported_with_the_header_read() -> None:
    frame = bytearray(codec.frame_bytes(MsgType.HELLO, 77))
    frame[-1] ^= 0x80
    error = _decode_error(codec.cobs_encode(bytes(frame)))
    assert (error.code, error.type, error.seq) == (ErrorCode.BAD_CRC, MsgType.HELLO, 77)


def _raw(type_: int, seq: int, length: int, payload: bytes) -> bytes:
    body = bytes([type_]) + seq.to_bytes(2, "little") + length.to_bytes(2, "little") + payload
    return codec.cobs_encode(body + zlib.crc32(body).to_bytes(4, "little"))


@pytest.mark.parametrize(("wire", "code", "seq"), [
    (_raw(MsgType.PING, 5, 3, b"ab"), ErrorCode.BAD_LENGTH, 5),  # length field disagrees
    (_raw(MsgType.PING, 6, 65, bytes(65)), ErrorCode.BAD_LENGTH, 6),  # over the type's 64
    (_raw(MsgType.HELLO, 7, 1, b"x"), ErrorCode.BAD_LENGTH, 7),  # HELLO takes nothing
    (_raw(MsgType.CLASSIFY, 8, 100, bytes(100)), ErrorCode.BAD_LENGTH, 8),  # under 3072
    (_raw(MsgType.RESULT, 9, 17, bytes(17)), ErrorCode.BAD_LENGTH, 9),
    (_raw(MsgType.INFO, 10, 66, bytes(64) + b"\x05\x41"), ErrorCode.BAD_LENGTH, 10),  # id len
    (_raw(MsgType.ERROR, 11, 1, b"\x01"), ErrorCode.BAD_LENGTH, 11),
    (_raw(MsgType.FAULT, 12, 4, bytes(4)), ErrorCode.BAD_LENGTH, 12),
    (_raw(0x05, 13, 0, b""), ErrorCode.UNKNOWN_TYPE, 13),
    (_raw(0x41, 14, 0, b""), ErrorCode.UNKNOWN_TYPE, 14),  # test-only range, undefined type
    (codec.cobs_encode(bytes([1, 15, 0, 0, 0, 1, 2, 3])), ErrorCode.BAD_FRAME, 15),  # 8 bytes
    (b"\x01\x01", ErrorCode.BAD_FRAME, None),  # one zero byte
    (b"\x09\x01\x02", ErrorCode.BAD_FRAME, None),  # code past the end
])
def test_malformed_frames_get_the_error_code_a_board_answers(wire: bytes, code: ErrorCode,
                                                              seq: int | None) -> None:
    error = _decode_error(wire)
    assert (error.code, error.seq) == (code, seq)
    # and the stream decoder says the same
    assert events(FrameDecoder(), wire + b"\x00") == [
        DecodeError(error.code, error.detail, error.type, error.seq, len(wire))]


# ---------------------------------------------------------------------------- messages

_u32 = st.integers(0, 0xFFFFFFFF)
_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
_seq = st.integers(0, 0xFFFF)

messages = st.one_of(
    st.builds(Hello, _seq),
    st.builds(Ping, _seq, st.binary(max_size=64)),
    st.builds(Classify, _seq, st.binary(min_size=3072, max_size=3072)),
    st.builds(Fault, _seq, st.integers(0, 255), _u32),
    st.builds(Info, _seq, st.integers(0, 255), st.tuples(*[st.integers(0, 255)] * 3),
              st.binary(min_size=12, max_size=12), st.binary(min_size=8, max_size=8),
              _u32, _u32, _u32, _u32, st.integers(0, 0xFFFF), st.integers(0, 255),
              st.integers(0, 255), _u32,
              _ascii.filter(lambda s: len(s) <= 16 and not s.endswith("\x00")),
              _ascii.filter(lambda s: len(s) <= 32)),
    st.builds(Pong, _seq, st.binary(max_size=64)),
    st.builds(Result, _seq, st.tuples(*[st.integers(-128, 127)] * 10), _u32, _u32),
    st.builds(Error, _seq, st.integers(0, 255), st.integers(0, 255),
              _ascii.filter(lambda s: len(s) <= 48)),
    st.builds(FaultAck, _seq),
)


@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    assert codec.decode(codec.encode(msg)) == msg


def test_result_reads_probabilities_and_label() -> None:
    result = Result(1, (-128, 127, 0, 127, -1, 0, 0, 0, 0, 0), 10, 20)
    assert result.probabilities[0] == 0.0 and result.probabilities[1] == 255 / 256
    assert result.label == 1  # the first of two equal maxima, like numpy.argmax


def test_info_decodes_padded_name_and_flags() -> None:
    info = codec.decode(codec.encode(Info(3, 1, (1, 2, 3), bytes(12), bytes(8), 1, 2, 3, 0, 3072,
                                          10, 0b10, 4, "nucleo-f411re", "m")))
    assert isinstance(info, Info)
    assert info.board_name == "nucleo-f411re" and info.optimised and not info.test_build


def test_non_ascii_text_from_a_board_is_replaced_not_fatal() -> None:
    payload = bytes([ErrorCode.INTERNAL, 3]) + b"caf\xc3\xa9"
    msg = codec.decode(codec.encode_frame(MsgType.ERROR, 4, payload))
    assert msg == Error(4, ErrorCode.INTERNAL, 3, "caf??")


def test_unknown_error_codes_and_fault_kinds_stay_plain_ints() -> None:
    err = codec.decode(codec.encode_frame(MsgType.ERROR, 1, b"\x63\x01"))
    assert isinstance(err, Error) and err.code == 99 and not isinstance(err.code, ErrorCode)
    fault = codec.decode(codec.encode(Fault(2, FaultKind.GARBAGE, 7)))
    assert fault == Fault(2, 3, 7) and isinstance(fault, Fault) and fault.kind is FaultKind.GARBAGE


@pytest.mark.parametrize("make", [
    lambda: Ping(1, bytes(65)), lambda: Classify(1, bytes(3071)), lambda: Fault(1, 256, 0),
    lambda: Result(1, (0,) * 9, 0, 0), lambda: Result(1, (128,) + (0,) * 9, 0, 0),
    lambda: codec.encode(Error(1, 1, 1, "x" * 49)), lambda: codec.encode(Hello(-1)),
])
def test_local_misuse_raises_value_error(make) -> None:
    with pytest.raises(ValueError):
        make()


# --------------------------------------------------------------------- stream decoding

_frames = st.lists(messages, min_size=1, max_size=4)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_frames, st.lists(st.integers(0, 20_000), max_size=30))
def test_decoder_yields_the_same_messages_for_any_chunking(msgs: list[Message],
                                                           cuts: list[int]) -> None:
    stream = b"".join(codec.encode(m) for m in msgs)
    assert events(FrameDecoder(), *_split(stream, cuts)) == msgs


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_frames, st.binary(max_size=5000), st.binary(max_size=5000),
       st.lists(st.integers(0, 30_000), max_size=20))
def test_decoder_resyncs_after_garbage_at_the_next_delimiter(msgs: list[Message], prefix: bytes,
                                                            suffix: bytes, cuts: list[int]) -> None:
    suffix = suffix.replace(b"\x00", b"")  # an unfinished frame at the end
    stream = prefix + b"\x00" + b"".join(codec.encode(m) for m in msgs) + suffix
    decoder = FrameDecoder()
    found = events(decoder, *_split(stream, cuts))
    assert [e for e in found if not isinstance(e, DecodeError)] == msgs
    assert decoder.buffered == (len(suffix) if len(suffix) <= MAX_ENCODED else 0)


@given(messages, st.data())
def test_truncated_frame_is_an_error_and_the_next_frame_survives(msg: Message,
                                                                 data: st.DataObject) -> None:
    wire = codec.encode(msg)
    cut = data.draw(st.integers(1, len(wire) - 2))
    found = events(FrameDecoder(), wire[:cut] + b"\x00" + codec.encode(Hello(9)))
    assert len(found) == 2 and isinstance(found[0], DecodeError) and found[1] == Hello(9)


@given(messages, st.data())
def test_any_single_bit_flip_is_detected(msg: Message, data: st.DataObject) -> None:
    frame = bytearray(codec.frame_bytes(msg.TYPE, msg.seq, msg.payload()))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    (found,) = events(FrameDecoder(), codec.cobs_encode(bytes(frame)) + b"\x00")
    assert isinstance(found, DecodeError)
    if bit // 8 >= codec.HEADER_SIZE:  # header intact: only the CRC can tell
        assert found.code is ErrorCode.BAD_CRC and found.seq == msg.seq


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12_000), st.lists(st.integers(0, 12_000), max_size=20))
def test_oversize_run_never_buffers_more_than_max_encoded(size: int, cuts: list[int]) -> None:
    run = b"\x07" * size  # no delimiter
    decoder = FrameDecoder()
    found = events(decoder, *_split(run, cuts))
    overflows = [e for e in found if isinstance(e, DecodeError) and e.code is ErrorCode.BAD_LENGTH]
    assert len(overflows) == (1 if size > MAX_ENCODED else 0)
    assert len(found) == len(overflows)
    # the rest of the overlong run is skipped up to the delimiter; then all is well again
    after = events(decoder, b"\x07" * 10 + b"\x00" + codec.encode(Ping(3, b"ok")))
    assert after[-1] == Ping(3, b"ok")
    assert len(after) == (1 if size > MAX_ENCODED else 2)


def test_run_of_max_encoded_plus_one_in_one_chunk_is_dropped_unstored() -> None:
    decoder = FrameDecoder()
    found = decoder.feed(b"\x07" * 3000)
    found += decoder.feed(b"\x07" * (MAX_ENCODED + 1 - 3000) + b"\x00" + codec.encode(Hello(1)))
    assert [type(e) for e in found] == [DecodeError, Hello]
    assert found[0].code is ErrorCode.BAD_LENGTH  # type: ignore[union-attr]


def test_empty_frames_are_ignored() -> None:
    assert events(FrameDecoder(), b"\x00\x00" + codec.encode(Hello(1)) + b"\x00") == [Hello(1)]


def test_reset_forgets_an_unfinished_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"boot noise")
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(codec.encode(Hello(2))) == [Hello(2)]


def test_max_frame_constants_follow_the_spec() -> None:
    assert (codec.MAX_PAYLOAD, MAX_FRAME, MAX_ENCODED) == (3072, 3081, 3094)
    # the spec's budget: a CLASSIFY request is 3,095 bytes on the wire, a RESULT 29
    assert len(codec.encode(Classify(1, bytes(range(256)) * 12))) <= 3095
    assert len(codec.encode(Result(0x0101, (1,) * 10, 0x01010101, 0x01010101))) == 29


# ---------------------------------------------------------------------- shared vectors


def _vectors() -> dict:
    return json.loads(VECTORS.read_text())


@pytest.mark.parametrize("vector", _vectors()["frames"], ids=lambda v: v["name"])
def test_codec_reproduces_vector_bytes_and_fields(vector: dict) -> None:
    wire = bytes.fromhex(vector["wire_hex"])
    payload = bytes.fromhex(vector["payload_hex"])
    assert codec.encode_frame(vector["type"], vector["seq"], payload) == wire
    assert codec.frame_bytes(vector["type"], vector["seq"], payload).hex() == vector["frame_hex"]
    assert ref_cobs_decode(wire[:-1]).hex() == vector["frame_hex"]  # independent COBS
    msg = codec.decode(wire)
    assert (int(msg.TYPE), msg.seq, msg.payload()) == (vector["type"], vector["seq"], payload)
    assert (vector["direction"] == "reply") == (msg.TYPE >= 0x7F)
    assert fields_of(msg) == vector["fields"]


@pytest.mark.parametrize("vector", _vectors()["rejects"], ids=lambda v: v["name"])
def test_codec_rejects_vector_frames_with_their_error(vector: dict) -> None:
    (found,) = FrameDecoder().feed(bytes.fromhex(vector["wire_hex"]))
    assert isinstance(found, DecodeError)
    assert (int(found.code), found.seq or 0, found.type or 0) == (
        vector["code"], vector["seq"], vector["type"])


def test_vector_file_is_what_make_vectors_writes() -> None:
    assert VECTORS.read_text() == render(), "run python tests/vectors/make_vectors.py"


def test_vectors_cover_what_the_firmware_tests_need() -> None:
    vectors = {v["name"]: v for v in _vectors()["frames"]}
    assert vectors["hello"]["wire_hex"] == codec.encode(Hello(1)).hex()
    assert vectors["ping_abc"]["payload_hex"] == b"abc".hex()
    assert vectors["classify_ramp"]["payload_hex"] == bytes(i % 256 for i in range(3072)).hex()
    edges = bytes.fromhex(vectors["classify_cobs_edges"]["wire_hex"])
    assert edges.endswith(b"\x01\x00") and len(edges) == MAX_ENCODED + 1
    assert {v["type_name"] for v in vectors.values()} == {t.name for t in MsgType}
