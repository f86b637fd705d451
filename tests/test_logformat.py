"""``log_format = "json"``: one JSON object per line, from the formatter and from a real node."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import signal
import socket
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootstrap.init import InitResult
from tests.support import NodeProcess
from trustchain.config import CONFIG_FILE_NAME
from trustchain.logformat import REQUEST_FIELDS, JsonFormatter, apply_format

KEYS = {"time", "level", "logger", "event"}


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records go, formatted as JSON, to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("trustchain.test.logformat")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    entries = [json.loads(line) for line in text[:-1].split("\n")]
    assert all(isinstance(entry, dict) for entry in entries)
    return entries


def test_a_line_holds_time_level_logger_and_event(logged) -> None:
    logger, stream = logged
    logger.warning("zone %s re-signed %d times", "example.net.", 3)
    [entry] = _lines(stream)
    assert set(entry) == KEYS
    assert (entry["level"], entry["logger"], entry["event"]) == (
        "warning", "trustchain.test.logformat", "zone example.net. re-signed 3 times")
    time = str(entry["time"])
    assert time.endswith("Z")  # RFC 3339, UTC
    moment = datetime.fromisoformat(time)
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_request_fields_from_extra_are_kept_and_other_extras_are_not(logged) -> None:
    logger, stream = logged
    fields = {"client": "2001:db8::1", "transport": "https", "method": "POST", "status": 429,
              "duration_ms": 12.5}
    logger.info("answered", extra={**fields, "color_message": "\x1b[1manswered", "peer": object()})
    [entry] = _lines(stream)
    assert set(entry) == KEYS | set(REQUEST_FIELDS)
    assert {name: entry[name] for name in fields} == fields


def test_a_value_json_cannot_encode_is_written_as_text(logged) -> None:
    logger, stream = logged
    logger.info("refused", extra={"method": Path("/x")})
    [entry] = _lines(stream)
    assert entry["method"] == "/x"


def test_an_exception_is_included_with_its_traceback(logged) -> None:
    logger, stream = logged
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("handler failed")
    [entry] = _lines(stream)
    assert entry["event"] == "handler failed" and entry["level"] == "error"
    assert "Traceback (most recent call last)" in str(entry["exception"])
    assert "ValueError: bad\nthing" in str(entry["exception"])


def test_non_ascii_and_line_breaks_stay_on_one_line(logged) -> None:
    logger, stream = logged
    message = "zone bücher.example.\nnext line\r\u2028\u2029\x85\x0b\x0c\x1c tab\t 日本 \U0001f512"
    logger.info(message, extra={"client": "line\nbreak"})
    logger.error("second")
    text = stream.getvalue()
    assert len(text.splitlines()) == 2  # str.splitlines knows every line break there is
    first, second = _lines(stream)
    assert first["event"] == message and first["client"] == "line\nbreak"
    assert second["event"] == "second"
    assert "bücher" in text and "日本" in text  # kept as UTF-8, not escaped


def test_apply_format_json_changes_the_root_handlers_and_text_leaves_them() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    text = logging.Formatter("%(message)s")
    handler.setFormatter(text)
    saved = [(h, h.formatter) for h in root.handlers]
    root.addHandler(handler)
    try:
        apply_format("text")
        assert handler.formatter is text
        apply_format("json")
        assert isinstance(handler.formatter, JsonFormatter)
    finally:
        root.removeHandler(handler)
        for h, formatter in saved:
            h.setFormatter(formatter)


def test_a_node_with_log_format_json_writes_json_lines(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess],
) -> None:
    config = data_dir / CONFIG_FILE_NAME
    default = config.read_text()
    assert 'log_format = "text"' in default.splitlines()  # init writes the setting
    assert "access_log = false" in default.splitlines()
    config.write_text(default.replace('log_format = "text"', 'log_format = "json"')
                      .replace("access_log = false", "access_log = true"))
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    host, port = proc.address("http")
    with socket.create_connection((host, port), timeout=10) as conn:  # a request line too long
        conn.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 414")
    proc.wait_for(r"answered 414")
    with urllib.request.urlopen(f"http://[{host}]:{port}/healthz", timeout=10) as answer:
        assert answer.status == 200
    proc.wait_for(r"GET /healthz 200")
    assert proc.stop(signal.SIGTERM) == 0
    entries = [json.loads(line) for line in proc.log]
    for entry in entries:
        assert isinstance(entry, dict) and KEYS <= set(entry), entry
    events = [entry["event"] for entry in entries]
    assert "node ready" in events and events[-1] == "stopped cleanly", events
    [refusal] = [entry for entry in entries if "answered 414" in entry["event"]]
    assert refusal["level"] == "warning"
    client = str(ipaddress.ip_network(f"{host}/64", strict=False))  # the caps' key: an IPv6 /64
    assert (refusal["client"], refusal["transport"], refusal["status"]) == (client, "http", 414)
    [access] = [entry for entry in entries if entry["logger"] == "trustchain.access"]
    assert (access["client"], access["transport"], access["method"], access["status"]) == (
        host, "http", "GET", 200)
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0


def test_devnet_knows_the_ready_line_in_either_format(logged) -> None:
    """``devnet up`` waits for each node's ready line: in JSON too (its nodes inherit
    TRUSTCHAIN_LOG_FORMAT)."""
    from trustchain.cli.devnet import _READY

    logger, stream = logged
    logger.info("node ready")
    assert _READY.search(stream.getvalue().encode())
    assert _READY.search(b"2026-12-03 06:20:44,588 INFO trustchain.node: node ready\n")
    assert not _READY.search(b'{"event":"node ready soon"}\n')
