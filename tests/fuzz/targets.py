"""Every fuzz target by name, built on first use (some build a PKI or a whole node)."""

from __future__ import annotations

from collections.abc import Callable

from tests.fuzz import bootstrap, ca, consensus, ct, dns, edges, stoq
from tests.fuzz.engine import Target

#: name -> factory, in the order the report lists them.
FACTORIES: dict[str, Callable[[], Target]] = {
    "http-json": edges.json_target,
    "http-app": edges.app_target,
    "stoq-router": edges.router_target,
    "csr": ca.csr_target,
    "ocsp": ca.ocsp_target,
    "ct-chain": ct.chain_target,
    "genesis": bootstrap.genesis_target,
    "enrolment": bootstrap.enrolment_target,
    "consensus": consensus.ledger_target,
    "consensus-codec": consensus.codec_target,
    "dns-udp": dns.udp_target,
    "dns-stream": dns.stream_target,
    "dns-tcp": dns.tcp_target,
    "stoq-framing": stoq.framing_target,
    "stoq-streams": stoq.connection_target,
    "doq": stoq.doq_target,
}


def build(name: str) -> Target:
    target = FACTORIES[name]()
    assert target.name == name, (target.name, name)
    return target
