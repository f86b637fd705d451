"""Binding listening sockets the same way for every transport; who a client is for caps."""

from __future__ import annotations

import ipaddress
import resource
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


def client_key(host: str) -> str:
    """The client a connection from ``host`` is counted against in per-address caps.

    An IPv4 address (IPv4-mapped ones included) counts as itself; an IPv6 client
    by its /64, the smallest block a host is given and may pick addresses from at
    will, so that it cannot step around a cap by changing its interface identifier.
    """
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def descriptor_limit() -> int:
    """How many file descriptors this process may hold open (its soft limit)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)
