"""A signing worker whose node dies exits quietly: no traceback in the node's log."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support import REPO
from transport.workers import _frame


def test_a_worker_whose_node_vanishes_mid_answer_exits_without_a_traceback() -> None:
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(
        [sys.executable, "-m", "transport.workers", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=REPO)
    theirs.close()
    # Many calls whose answers fill the socket buffer, then the node's end goes away
    # unread: the worker's sendall meets a reset or a broken pipe.
    calls = [(i, bytes.fromhex, ("00" * 60_000,), False) for i in range(64)]
    ours.sendall(_frame(("calls", calls)))
    ours.recv(1)  # the worker has started answering
    ours.close()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"Traceback" not in stderr, stderr.decode()
