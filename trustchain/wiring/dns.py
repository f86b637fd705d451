"""The DNS service's wiring: built over the zone tables and the key store, and its
management methods (admin only, stoq/1 ``admin``).
"""

from __future__ import annotations

import dns.name

from transport.dns import Notifier
from transport.methods import Service, message_method
from trustchain.dns.service import DnsService
from trustchain.storage.dns import SqliteZoneStore
from trustchain.wiring.keys import KeystoreDnssecKeys, KeystoreSecrets
from trustchain.wiring.node import OpenNode, utcnow


def build_dns(node: OpenNode, notifier: Notifier | None = None) -> DnsService:
    origin = dns.name.from_text(node.identity.origin)
    store = SqliteZoneStore(node.db)
    return DnsService(
        store, now=utcnow,
        default_ns=dns.name.from_text(f"{node.identity.node_id}.nodes", origin),
        secrets=KeystoreSecrets(node.keystore, utcnow), notifier=notifier, origin=origin,
        keys=KeystoreDnssecKeys(node.keystore, store, utcnow),
    )


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
