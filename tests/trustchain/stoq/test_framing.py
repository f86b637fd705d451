from __future__ import annotations

import pytest
from aioquic.buffer import encode_uint_var
from hypothesis import given
from hypothesis import strategies as st

from trustchain.stoq.framing import (
    MAX_FRAME_PAYLOAD,
    ErrorCode,
    FrameType,
    MessageReader,
    Request,
    Response,
    StoqError,
    encode_frame,
    encode_request,
    encode_response,
)

names = st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@given(names, names, st.binary(max_size=3 * 1024), st.lists(st.integers(0, 10**6), max_size=8))
def test_request_round_trip_in_any_chunking(service, method, message, cuts) -> None:
    reader = MessageReader(expect=FrameType.REQUEST)
    for piece in _chunks(encode_request(service, method, message), cuts):
        reader.feed(piece)
    assert reader.finish() == Request(service, method, message)


@given(st.integers(100, 999), st.binary(max_size=2048))
def test_response_round_trip(status, message) -> None:
    reader = MessageReader(expect=FrameType.RESPONSE)
    reader.feed(encode_response(status, message))
    assert reader.finish() == Response(status, message)


def test_large_message_is_split_into_frames() -> None:
    message = bytes(range(256)) * 1000  # 256,000 bytes
    wire = encode_response(200, message)
    assert len(wire) - len(message) > 3 * 4  # several DATA frame headers
    reader = MessageReader(expect=FrameType.RESPONSE)
    reader.feed(wire)
    assert reader.finish().message == message


@given(st.binary(max_size=400), st.sampled_from([FrameType.REQUEST, FrameType.RESPONSE]))
def test_arbitrary_bytes_parse_or_raise_the_protocol_error(data, expect) -> None:
    reader = MessageReader(expect=expect, max_message=1000)
    try:
        reader.feed(data)
        result = reader.finish()
    except StoqError as exc:
        assert exc.error_code in {e.value for e in ErrorCode}
        return
    assert isinstance(result, (Request, Response))


@pytest.mark.parametrize(
    ("wire", "code", "message"),
    [
        (encode_frame(FrameType.DATA, b"x"), ErrorCode.PROTOCOL_ERROR, "must start with"),
        (encode_frame(FrameType.REQUEST, b"\x03dns\x05query") * 2, ErrorCode.PROTOCOL_ERROR,
         "unexpected frame"),
        (encode_frame(FrameType.REQUEST, b"\x03DNS\x05query"), ErrorCode.PROTOCOL_ERROR,
         "invalid service"),
        (encode_frame(FrameType.REQUEST, b"\x03dns\x05query!"), ErrorCode.PROTOCOL_ERROR,
         "trailing"),
        (encode_frame(FrameType.REQUEST, b"\x09dns"), ErrorCode.PROTOCOL_ERROR, "truncated"),
        (encode_uint_var(0) + encode_uint_var(MAX_FRAME_PAYLOAD + 1), ErrorCode.FRAME_TOO_LARGE,
         "frame of"),
        (encode_uint_var(1) + encode_uint_var(200), ErrorCode.FRAME_TOO_LARGE, "frame of"),
        (encode_request("dns", "query", b"x" * 1001), ErrorCode.MESSAGE_TOO_LARGE, "exceeds"),
        (encode_request("dns", "query", b"abc")[:-1], ErrorCode.PROTOCOL_ERROR, "inside a frame"),
        (b"", ErrorCode.PROTOCOL_ERROR, "before its first frame"),
        (encode_frame(0x21, b""), ErrorCode.PROTOCOL_ERROR, "must start with"),
    ],
)
def test_violations_carry_their_error_code(wire: bytes, code: ErrorCode, message: str) -> None:
    reader = MessageReader(expect=FrameType.REQUEST, max_message=1000)
    with pytest.raises(StoqError, match=message) as info:
        reader.feed(wire)
        reader.finish()
    assert info.value.error_code == code


def test_response_status_must_be_three_digits() -> None:
    reader = MessageReader(expect=FrameType.RESPONSE)
    with pytest.raises(StoqError):
        reader.feed(encode_frame(FrameType.RESPONSE, encode_uint_var(42)))


def test_encoder_refuses_bad_names() -> None:
    with pytest.raises(ValueError):
        encode_request("DNS", "query", b"")
