"""aioquic's private attributes that transport/tls.py and transport/quic.py rely on.

aioquic has no public setting to request a client certificate or to read the
chain a client presented, and no hook to decide Retry per connection; the
transport patches or reads these private names.  pyproject.toml pins aioquic
to the releases that have them (1.2 to 1.7.x, each checked); this test fails
loudly, naming what moved, if an upgrade in or beyond the range changes them.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection


def _assigned(cls: type, name: str) -> bool:
    """``self.<name>`` is assigned in ``cls.__init__``."""
    return f"self.{name} " in inspect.getsource(cls.__init__) or \
        f"self.{name}:" in inspect.getsource(cls.__init__)


def test_the_installed_aioquic_is_in_the_pinned_range() -> None:
    major, minor = (int(part) for part in version("aioquic").split(".")[:2])
    assert (1, 2) <= (major, minor) < (1, 8), version("aioquic")


def test_tls_client_certificate_attributes() -> None:
    context = tls.Context(is_client=False)
    for name in ("_request_client_certificate", "_peer_certificate", "_peer_certificate_chain"):
        assert hasattr(context, name), f"aioquic.tls.Context.{name} is gone"


def test_connection_initialise_hook() -> None:
    connection = QuicConnection(configuration=QuicConfiguration(is_client=True))
    assert callable(getattr(connection, "_initialize", None)), "QuicConnection._initialize"
    # The TLS context that request_client_certificates() patches is made there.
    assert "self.tls = " in inspect.getsource(QuicConnection._initialize), "QuicConnection.tls"


def test_server_and_protocol_attributes() -> None:
    for name in ("_retry", "_protocols", "_configuration", "_loop"):
        assert _assigned(QuicServer, name), f"aioquic.asyncio.server.QuicServer.{name}"
    for name in ("_quic", "_loop"):
        assert _assigned(QuicConnectionProtocol, name), f"QuicConnectionProtocol.{name}"


def test_h3_connection_hooks() -> None:
    """transport/h3.py turns off the QPACK dynamic table by resetting these in an
    ``_init_connection`` override, which the constructor calls after setting them."""
    from aioquic.h3.connection import H3Connection

    init = inspect.getsource(H3Connection.__init__)
    for name in ("self._max_table_capacity = ", "self._blocked_streams = ", "self._decoder = "):
        assert name in init, f"H3Connection.__init__ no longer sets {name.strip(' =')}"
    assert init.index("self._decoder = ") < init.index("self._init_connection()"), \
        "H3Connection.__init__ calls _init_connection before making its decoder"
    assert callable(getattr(H3Connection, "_get_local_settings", None)), "_get_local_settings"
