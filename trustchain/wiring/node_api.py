"""The node's own stoq/1 methods: DNS queries, its validators, status, enrolment,
and zone management.

The handlers here take the request message and the peer, as the services
they call were written; :func:`message_method` adapts them to the one method
table (:mod:`transport.methods`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bootstrap.enrolment import EnrolmentService
from transport.methods import Call, Method, Service
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.dns.service import DnsService
from trustchain.errors import BadRequest
from trustchain.identity import Peer
from trustchain.storage.node import NodeStore
from trustchain.wiring.node import OpenNode
from trustchain.wiring.status import node_status


def message_method(name: str, handler: Callable[[bytes, Peer | None], bytes]) -> Method:
    """A stoq/1 method whose handler takes the raw message and the peer."""
    return Method(lambda call: handler(call.body, call.peer), stoq=name, raw=True)


def dns_query_service(handler: DnsHandler) -> Service:
    def query(call: Call) -> bytes:
        response = handler(call.body, QueryContext("stoq"))
        if response is None:
            raise BadRequest("not a DNS query")
        return response

    return Service("dns", (Method(query, stoq="query", raw=True),))


def node_services(node: OpenNode, enrolment: EnrolmentService) -> list[Service]:
    """Validators, status and enrolment: what every node serves."""

    def validators(call: Call) -> list[object]:
        return [v.model_dump(mode="json") for v in node.genesis.body.validators]

    def status(call: Call) -> dict[str, object]:
        return node_status(node.layout.path)

    return [
        Service("consensus", (Method(validators, stoq="validators"),)),
        Service("ca", (message_method("enrol-challenge", enrolment.challenge),
                       message_method("enrol-request", enrolment.request),
                       message_method("enrol-status", enrolment.status))),
        Service("admin", (Method(status, stoq="status"),
                          message_method("enrolments", enrolment.list),
                          message_method("approve", enrolment.approve),
                          message_method("reject", enrolment.reject))),
    ]


def zone_service(service: DnsService) -> Service:
    """Zone, record, secondary, network and DNSSEC management (admin only)."""
    return Service("admin", tuple(message_method(name, handler) for name, handler in (
        ("zone-create", service.zone_create),
        ("zone-delete", service.zone_delete),
        ("zone-list", service.zone_list),
        ("zone-export", service.zone_export),
        ("zone-import", service.zone_import),
        ("records-list", service.records_list),
        ("records-change", service.records_change),
        ("secondary-add", service.secondary_add),
        ("secondary-list", service.secondary_list),
        ("secondary-remove", service.secondary_remove),
        ("network-register", service.network_register),
        ("network-list", service.network_list),
        ("dnssec-ds", service.dnssec_ds),
        ("dnssec-status", service.dnssec_status),
        ("dnssec-rollover", service.dnssec_rollover),
        ("dnssec-ds-published", service.dnssec_ds_published),
    )))


def enrolment_for(node: OpenNode, clock: Callable[[], datetime],
                  random_bytes: Callable[[int], bytes]) -> EnrolmentService:
    return EnrolmentService(
        NodeStore(node.db), network=node.identity.network_name, origin=node.identity.origin,
        issuer=node.credentials.issuer, now=clock, random_bytes=random_bytes,
    )
