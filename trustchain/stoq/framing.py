"""``stoq/1`` framing: the byte layout of one stream (see docs/stoq.md).

Pure code: bytes in, frames and messages out.  A frame is::

    Frame { Type (i), Length (i), Payload (Length) }

with QUIC variable-length integers (RFC 9000, section 16).  A request stream
carries one REQUEST frame then zero or more DATA frames, then FIN; its
response carries one RESPONSE frame then DATA frames, then FIN.  The message
is the concatenation of the DATA payloads.

Every violation raises :class:`StoqError` carrying the application error code
with which the stream is to be reset; nothing else escapes the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from aioquic.buffer import Buffer, BufferReadError, encode_uint_var

from trustchain.errors import RemoteError

ALPN = "stoq/1"


class FrameType(IntEnum):
    DATA = 0x00
    REQUEST = 0x01
    RESPONSE = 0x02


class ErrorCode(IntEnum):
    """Application error codes for RESET_STREAM, STOP_SENDING and CONNECTION_CLOSE."""

    NO_ERROR = 0x00
    PROTOCOL_ERROR = 0x01
    FRAME_TOO_LARGE = 0x02
    MESSAGE_TOO_LARGE = 0x03
    INTERNAL_ERROR = 0x04
    REQUEST_CANCELLED = 0x05
    BAD_CERTIFICATE = 0x06


class Status(IntEnum):
    OK = 200
    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    TOO_MANY_REQUESTS = 429
    INTERNAL_ERROR = 500
    UNAVAILABLE = 503


#: Largest payload of one frame, and of one REQUEST frame's names.
MAX_FRAME_PAYLOAD = 64 * 1024
MAX_HEADER_PAYLOAD = 128
#: Default largest message (sum of DATA payloads) a reader accepts.
DEFAULT_MAX_MESSAGE = 1024 * 1024

NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SERVICES = ("dns", "ca", "ct", "consensus", "gossip", "admin")


class StoqError(RemoteError):
    """The peer broke the stoq/1 framing rules."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = int(error_code)


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    return encode_uint_var(frame_type) + encode_uint_var(len(payload)) + payload


def _data_frames(message: bytes) -> bytes:
    return b"".join(
        encode_frame(FrameType.DATA, message[i : i + MAX_FRAME_PAYLOAD])
        for i in range(0, len(message), MAX_FRAME_PAYLOAD)
    )


def encode_request(service: str, method: str, message: bytes) -> bytes:
    """The whole byte content of a request stream (the caller sends FIN after it)."""
    for label, value in (("service", service), ("method", method)):
        if not NAME.fullmatch(value):
            raise ValueError(f"invalid {label} name {value!r}")
    header = (
        encode_uint_var(len(service)) + service.encode() + encode_uint_var(len(method))
        + method.encode()
    )
    return encode_frame(FrameType.REQUEST, header) + _data_frames(message)


def encode_response(status: int, message: bytes) -> bytes:
    """The whole byte content of a response stream (the caller sends FIN after it)."""
    return encode_frame(FrameType.RESPONSE, encode_uint_var(status)) + _data_frames(message)


@dataclass(frozen=True)
class Request:
    service: str
    method: str
    message: bytes


@dataclass(frozen=True)
class Response:
    status: int
    message: bytes


class MessageReader:
    """Reassembles one stream's REQUEST or RESPONSE and its message.

    Feed it every chunk of the stream in order with :meth:`feed`; when the
    stream ends (FIN), :meth:`finish` returns the :class:`Request` or
    :class:`Response`.  Limits are enforced as bytes arrive, so an oversized
    message is refused before it is buffered.
    """

    def __init__(self, *, expect: FrameType, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        if expect not in (FrameType.REQUEST, FrameType.RESPONSE):
            raise ValueError("a stream starts with REQUEST or RESPONSE")
        self._expect = expect
        self._max_message = max_message
        self._pending = b""
        self._head: Request | Response | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        """:raises StoqError: on any framing violation."""
        self._pending += data
        while True:
            buf = Buffer(data=self._pending)
            try:
                frame_type = buf.pull_uint_var()
                length = buf.pull_uint_var()
            except BufferReadError:
                if len(self._pending) > 16:  # two varints never exceed 16 bytes
                    raise StoqError(ErrorCode.PROTOCOL_ERROR, "malformed frame header") from None
                return
            limit = MAX_FRAME_PAYLOAD if frame_type == FrameType.DATA else MAX_HEADER_PAYLOAD
            if length > limit:
                raise StoqError(ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes")
            start = buf.tell()
            if len(self._pending) - start < length:
                return
            payload = self._pending[start : start + length]
            self._pending = self._pending[start + length :]
            self._frame(frame_type, payload)

    def _frame(self, frame_type: int, payload: bytes) -> None:
        if self._head is None:
            if frame_type != self._expect:
                raise StoqError(
                    ErrorCode.PROTOCOL_ERROR,
                    f"stream must start with a {self._expect.name} frame, not type {frame_type:#x}",
                )
            self._head = self._parse_head(payload)
        elif frame_type == FrameType.DATA:
            self._size += len(payload)
            if self._size > self._max_message:
                raise StoqError(
                    ErrorCode.MESSAGE_TOO_LARGE, f"message exceeds {self._max_message} bytes"
                )
            self._parts.append(payload)
        else:
            raise StoqError(ErrorCode.PROTOCOL_ERROR, f"unexpected frame type {frame_type:#x}")

    def _parse_head(self, payload: bytes) -> Request | Response:
        buf = Buffer(data=payload)
        try:
            if self._expect == FrameType.RESPONSE:
                status = buf.pull_uint_var()
                if not buf.eof() or not 100 <= status <= 999:
                    raise StoqError(ErrorCode.PROTOCOL_ERROR, "malformed RESPONSE frame")
                return Response(status, b"")
            names = []
            for _ in range(2):
                size = buf.pull_uint_var()
                raw = buf.pull_bytes(size)
                try:
                    name = raw.decode("ascii")
                except UnicodeDecodeError:
                    name = ""
                if not NAME.fullmatch(name):
                    raise StoqError(ErrorCode.PROTOCOL_ERROR, "invalid service or method name")
                names.append(name)
            if not buf.eof():
                raise StoqError(ErrorCode.PROTOCOL_ERROR, "trailing bytes in REQUEST frame")
        except BufferReadError:
            raise StoqError(ErrorCode.PROTOCOL_ERROR, "truncated frame payload") from None
        return Request(names[0], names[1], b"")

    def finish(self) -> Request | Response:
        """The stream ended: return what it carried.

        :raises StoqError: if the stream ended inside a frame or before its
            first frame.
        """
        if self._pending:
            raise StoqError(ErrorCode.PROTOCOL_ERROR, "stream ended inside a frame")
        if self._head is None:
            raise StoqError(ErrorCode.PROTOCOL_ERROR, "stream ended before its first frame")
        message = b"".join(self._parts)
        if isinstance(self._head, Request):
            return Request(self._head.service, self._head.method, message)
        return Response(self._head.status, message)
