"""Binding listening sockets the same way for every transport."""

from __future__ import annotations

import ipaddress
import socket

from trustchain.errors import ListenError


def format_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def bind_socket(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """Bind a non-blocking socket of ``kind`` on ``address``:``port``.

    ``::`` is bound dual-stack (IPv4-mapped addresses accepted) where the OS
    allows; any other IPv6 address is bound IPv6-only.

    :raises ListenError: naming the address and the OS's reason.
    """
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if ip.is_unspecified else 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        raise ListenError(
            f"cannot listen on {format_address(address, port)}/{proto}: {exc.strerror}"
        ) from None
    return sock
