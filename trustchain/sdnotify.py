"""Tell a service manager (systemd, ``Type=notify``) about the node's state.

The ``sd_notify(3)`` protocol, without libsystemd: one datagram of
newline-separated ``KEY=VALUE`` fields to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).  With no
``NOTIFY_SOCKET`` (not run by systemd) it does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

ENV_VAR = "NOTIFY_SOCKET"
log = logging.getLogger(__name__)


def socket_address(value: str) -> str | None:
    """The ``AF_UNIX`` address ``$NOTIFY_SOCKET`` names, or None if it names none."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # the abstract namespace
    if value.startswith("/"):
        return value
    return None  # (vsock: addresses are for virtual machines, not for this node)


def notify(*fields: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) to the service manager.

    :returns: whether a message was sent; False with no ``$NOTIFY_SOCKET``, or if
        it could not be sent (logged: a node that cannot notify keeps serving).
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not value:
        return False
    address = socket_address(value)
    if address is None:
        log.warning("%s=%r: not a unix socket; not notifying", ENV_VAR, value)
        return False
    message = "\n".join(fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", value, exc)
        return False
    return True
