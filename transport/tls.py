"""TLS settings for QUIC, and the two places where aioquic needs help.

aioquic 1.x validates the *server* chain on the client side (against the
``cadata`` we give it: the genesis root only, never the system store), but
on the server side it

1. has no setting to ask clients for a certificate (its TLS context has a
   ``_request_client_certificate`` flag "for test purposes"), and
2. checks the client's proof of key possession (CertificateVerify) but not
   the client's chain.

:func:`request_client_certificates` sets the flag when aioquic creates the
TLS context; :func:`peer_certificates` reads what the client presented, and
``trustchain.identity`` validates it.  Both touch private attributes,
so they live here, in one place, and the mutual-TLS tests fail loudly if an
aioquic upgrade changes them.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from trustchain.identity import TlsIdentity


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def server_configuration(
    identity: TlsIdentity, *, root: x509.Certificate, alpn_protocols: list[str],
    idle_timeout: float, max_datagram_frame_size: int | None = None,
) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=alpn_protocols,
        idle_timeout=idle_timeout,
        max_datagram_frame_size=max_datagram_frame_size,
    )
    config.certificate = identity.certificate
    config.certificate_chain = list(identity.chain)
    config.private_key = identity.private_key
    # Client certificates are checked by trustchain.identity, not by aioquic.
    config.verify_mode = ssl.CERT_NONE
    config.cadata = pem(root)
    return config


def client_configuration(
    *, root: x509.Certificate, server_name: str, alpn: str,
    identity: TlsIdentity | None = None, idle_timeout: float = 30.0,
) -> QuicConfiguration:
    """Verify the server against ``root`` only, and present ``identity`` if given."""
    config = QuicConfiguration(
        is_client=True, alpn_protocols=[alpn], server_name=server_name, idle_timeout=idle_timeout,
    )
    config.verify_mode = ssl.CERT_REQUIRED
    config.cadata = pem(root)
    if identity is not None:
        config.certificate = identity.certificate
        config.certificate_chain = list(identity.chain)
        config.private_key = identity.private_key
    return config


def https_context(identity: TlsIdentity,
                  client_cas: list[x509.Certificate] | None = None) -> ssl.SSLContext:
    """A TLS server context for HTTPS/1.1 from a key held only in memory.

    ``ssl.SSLContext.load_cert_chain`` reads files; the key is handed to it
    through anonymous memory files (``memfd``), so the decrypted key never
    touches a disk.  With ``client_cas`` (the genesis root and the network's
    infrastructure CA), clients may present a certificate: one that does not
    chain to the root is refused in the handshake, and none at all is fine
    (public routes); which identity a certificate carries is decided later
    (:func:`trustchain.identity.identify_peer`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # multiplexing is HTTP/3's job (QUIC port)
    if client_cas:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=pem(*client_cas).decode())
    key_pem = identity.private_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    fds = []
    try:
        for content in (pem(identity.certificate, *identity.chain), key_pem):
            fd = os.memfd_create("trustchain-tls", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, content)
        context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)
    return context


def request_client_certificates(quic: QuicConnection) -> None:
    """Make a server-side connection send a CertificateRequest (optional for the client)."""
    original: Any = quic._initialize

    def initialize(peer_cid: bytes) -> None:
        original(peer_cid)
        quic.tls._request_client_certificate = True

    quic._initialize = initialize  # type: ignore[method-assign]


def peer_certificates(quic: QuicConnection) -> tuple[x509.Certificate | None, list[x509.Certificate]]:
    """The certificate and chain the peer presented (``None`` if it presented none)."""
    tls = quic.tls
    return tls._peer_certificate, list(tls._peer_certificate_chain or [])
