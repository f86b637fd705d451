"""Sending what a QUIC connection has queued once per event-loop turn, not once per stream.

aioquic's ``QuicConnectionProtocol.transmit()`` builds and sends packets for
everything the connection has queued, walking every open stream.  When many
requests on one connection complete in the same loop turn (a CT sequencing
tick hands out hundreds of SCTs at once), calling it per response builds a
partly filled packet per stream and walks the streams again each time; a
transmit scheduled for the end of the turn packs the responses together.
Events from the network already end in one transmit per datagram (aioquic's
``datagram_received``).
"""

from __future__ import annotations

from aioquic.asyncio.protocol import QuicConnectionProtocol


class CoalescedTransmit(QuicConnectionProtocol):
    _transmit_pending = False

    def transmit_soon(self) -> None:
        """Transmit once, after the callbacks already due in this loop turn."""
        if not self._transmit_pending:
            self._transmit_pending = True
            self._loop.call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._transmit_pending = False
        self.transmit()
