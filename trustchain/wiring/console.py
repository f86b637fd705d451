"""The public web console at ``/ui/``: read-only pages over what the node already
publishes, server-rendered (Jinja2 through Starlette), one small stylesheet, no script.

=========================  =========================================================
URL                        shows
=========================  =========================================================
``/ui/``                   a search box and each log's size and index progress
``/ui/search?q=...``       certificates by domain or serial (rules:
                           :mod:`trustchain.ct.search`), with their log entries
``/ui/certificate/SERIAL`` one certificate decoded: names, issuer, validity, embedded
                           SCTs, log entries, revocation status from this node's CA
``/ui/logs``               each log's latest checkpoint and its cosignatures
``/ui/zones``              the zones this node serves, with their DNSSEC state
``/ui/federation``         the consensus: validators, members, height, evidence
=========================  =========================================================

Everything here is public (what ``GET /logs``, ``/consensus/status``, OCSP and DNS
already answer anyone); nothing changes state.  Bad input (a malformed query or serial,
overlong text, an unknown serial) gets a 4xx page.  Handlers are ``async`` so they run
on the event loop's thread, which owns the database connection.

The search index (:mod:`trustchain.storage.ct_search`) is brought up to date by
:class:`Indexer` at start and after each sequencing, in bounded batches on the event
loop, from its durable watermark.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from transport.ct import LogRunner
from transport.methods import Call, Handler, Reply, Service
from trustchain.ca.store import CaStore, CertificateRecord
from trustchain.ct.note import NoteError, cosignature_timestamp, parse_note
from trustchain.ct.search import QueryError, parse_query, parse_serial
from trustchain.ct.structs import EntryType
from trustchain.dns.records import DnsRequestError
from trustchain.dns.service import DnsService
from trustchain.errors import TrustchainError
from trustchain.storage.ct import SqliteLogStore
from trustchain.storage.ct_search import BATCH, CtSearchIndex, Hit, serial_text
from trustchain.storage.database import Database

log = logging.getLogger("trustchain.console")

ASSETS = Path(__file__).with_name("console_assets")
#: Log entries a search reads at most, and certificates it shows at most.
SEARCH_ROWS = 1000
SEARCH_CERTIFICATES = 100
#: No script, no third party: the page may load only its own stylesheet.
HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_NAV = (("/ui/", "Search"), ("/ui/logs", "Logs"), ("/ui/zones", "Zones"),
        ("/ui/federation", "Federation"))


class Indexer:
    """Keeps the search index up with the logs, on the event loop: a batch of entries per
    turn of the loop until none is left, so requests are served between batches."""

    def __init__(self, index: CtSearchIndex, batch: int = BATCH // 2) -> None:
        self._index = index
        self._batch = batch
        self._scheduled = False

    def wake(self) -> None:
        """Catch up soon (after a sequencing, at start); nothing if already scheduled."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        self._scheduled = False
        try:
            indexed = self._index.catch_up(self._batch)
        except Exception:  # the watermark did not move: the next sequencing retries
            log.exception("the certificate search index could not catch up")
            return
        if indexed:
            self.wake()


def _when(moment: datetime | int | None) -> str:
    """A time as the console shows it: UTC to the second (an int: milliseconds)."""
    if moment is None:
        return "-"
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _colons(serial: int) -> str:
    text = serial_text(serial)
    text = text.zfill(len(text) + len(text) % 2)
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def _public(services: Iterable[Service], route: str
            ) -> Callable[[dict[str, str]], Awaitable[Any]] | None:
    """The handler of the public HTTP method ``route``, called as an anonymous client."""
    for service in services:
        for method in service.methods:
            if method.http == route:
                return _anonymous(method.handler)
    return None


def _anonymous(handler: Handler) -> Callable[[dict[str, str]], Awaitable[Any]]:
    async def call(args: dict[str, str]) -> Any:
        answer = handler(Call(args, b"", None))
        return await answer if inspect.isawaitable(answer) else answer
    return call


def _entry_rows(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"log": h.log, "index": h.index, "timestamp": _when(h.timestamp),
             "kind": "precertificate" if h.precert else "certificate"} for h in hits]


def group(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """Search hits as certificates: one per serial and issuer (a precertificate in two logs,
    its certificate), newest first."""
    groups: dict[tuple[int, str], list[Hit]] = {}
    for hit in hits:
        groups.setdefault((hit.serial, hit.issuer), []).append(hit)
    ordered = sorted(groups.items(), key=lambda item: item[1][0].not_before, reverse=True)
    return [{"serial": serial_text(serial), "issuer": issuer,
             "names": list(dict.fromkeys(n for h in members for n in h.names)),
             "not_before": _when(members[0].not_before), "not_after": _when(members[0].not_after),
             "entries": _entry_rows(members)} for (serial, issuer), members in ordered]


def _general_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName),
            *(str(a) for a in san.get_values_for_type(x509.IPAddress)),
            *san.get_values_for_type(x509.UniformResourceIdentifier)]


def _embedded_scts(cert: x509.Certificate, names: dict[bytes, str]) -> list[dict[str, str]]:
    try:
        scts = cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound:
        return []
    return [{"log": names.get(sct.log_id, "a log unknown to this node"),
             "log_id": base64.b64encode(sct.log_id).decode(),
             "timestamp": _when(sct.timestamp.replace(tzinfo=UTC))} for sct in scts]


def status_of(record: CertificateRecord | None, cert: x509.Certificate | None,
              store: CaStore) -> dict[str, str]:
    """The CA's answer for a certificate, as OCSP gives it: ``good``, ``revoked`` or
    ``unknown`` (not a serial of this CA, or another issuer's certificate with it)."""
    if record is None:
        return {"status": "unknown", "detail": "this node's CA did not issue it"}
    issuer = store.issuer(record.issuer_key_id)
    if cert is not None and (issuer is None or issuer.certificate.subject != cert.issuer):
        return {"status": "unknown", "detail": "another issuer's certificate with the serial "
                                               "of one of this CA's"}
    if record.revoked_at is not None:
        return {"status": "revoked", "detail": f"since {_when(record.revoked_at)}, reason: "
                                               f"{record.reason or 'unspecified'}"}
    return {"status": "good", "detail": f"issued by this node's CA ({record.state})"}


def _logged_certificate(db: Database, hits: Sequence[Hit]) -> x509.Certificate | None:
    """The certificate (or precertificate) one of ``hits`` holds, certificates first."""
    for hit in sorted(hits, key=lambda h: h.precert):
        for sequenced, chain in SqliteLogStore(db, hit.log).entries(hit.index, hit.index):
            der = (sequenced.entry.body if sequenced.entry.entry_type == EntryType.X509
                   else chain[0] if chain else None)
            if der is not None:
                try:
                    return x509.load_der_x509_certificate(der)
                except ValueError:
                    continue
    return None


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def describe_certificate(cert: x509.Certificate) -> dict[str, Any]:
    try:
        cert.extensions.get_extension_for_class(x509.PrecertPoison)
        precert = True
    except x509.ExtensionNotFound:
        precert = False
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "sans": _general_names(cert), "serial": serial_text(cert.serial_number),
            "serial_colons": _colons(cert.serial_number),
            "not_before": _when(cert.not_valid_before_utc),
            "not_after": _when(cert.not_valid_after_utc),
            "key": _key_text(cert),
            "signature": getattr(cert.signature_algorithm_oid, "_name",
                                 cert.signature_algorithm_oid.dotted_string),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(), "precert": precert,
            "pem": cert.public_bytes(Encoding.PEM).decode()}


def _signatures(text: str) -> list[dict[str, str]]:
    """A checkpoint's signature lines: the log's own first, then witnesses' cosignatures."""
    try:
        note = parse_note(text)
    except NoteError:
        return []
    rows = []
    for i, sig in enumerate(note.signatures):
        try:
            when = _when(cosignature_timestamp(sig) * 1000) if i else "-"
            kind = "cosignature" if i else "log signature"
        except NoteError:
            when, kind = "-", "signature"
        rows.append({"name": sig.name, "key_id": sig.key_id.hex(), "kind": kind, "time": when})
    return rows


def console_routes(db: Database, logs: LogRunner, ca_store: CaStore, dns: DnsService,
                   services: Sequence[Service]) -> list[BaseRoute]:
    """The console's routes over the node's logs, CA store, DNS service and public methods;
    starts keeping the search index up (call on the running event loop)."""
    index = CtSearchIndex(db)
    indexer = Indexer(index)
    logs.head_listeners.append(indexer.wake)
    indexer.wake()  # logs that existed before, entries sequenced while the node was down
    templates = Jinja2Templates(directory=ASSETS)
    stylesheet = (ASSETS / "console.css").read_bytes()
    consensus_status = _public(services, "GET /consensus/status")
    log_list = _public(services, "GET /logs")
    checkpoint = _public(services, "GET /logs/{log}/checkpoint")

    def page(request: Request, name: str, code: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {"nav": _NAV, **context},
                                          status_code=code, headers=HEADERS)

    def refuse(request: Request, code: int, message: str) -> Response:
        return page(request, "error.html", code, title=f"{code}", message=message)

    def summary() -> list[dict[str, Any]]:
        progress = {p.log: p for p in index.progress()}
        rows = []
        for name, lg in logs.logs.items():
            sth = lg.get_sth()
            done = progress.get(name)
            rows.append({"name": name, "size": sth["tree_size"],
                         "timestamp": _when(int(str(sth["timestamp"])) or None),
                         "indexed": done.indexed if done else 0})
        return rows

    async def home(request: Request) -> Response:
        return page(request, "home.html", title="Certificate search", logs=summary(),
                    query="")

    async def search(request: Request) -> Response:
        text = request.query_params.get("q", "")
        try:
            query = parse_query(text)
        except QueryError as exc:
            return refuse(request, 400, str(exc))
        hits: list[Hit] = []
        if query.serial is not None:
            hits += index.by_serial(query.serial, limit=SEARCH_ROWS)
        if query.name is not None:
            hits += index.by_name(query.name, strict=query.strict,
                                  limit=SEARCH_ROWS - len(hits))
        results = group(hits)
        return page(request, "search.html", title=f"Search: {query.text}", query=query.text,
                    results=results[:SEARCH_CERTIFICATES],
                    truncated=len(results) > SEARCH_CERTIFICATES or len(hits) >= SEARCH_ROWS,
                    behind=index.behind())

    async def log_names() -> dict[bytes, str]:
        names = {lg.log_id: f"{name} (this node)" for name, lg in logs.logs.items()}
        if log_list is not None:
            try:
                listed = await log_list({})
            except TrustchainError:
                listed = {}
            for operator in listed.get("operators", []):
                for entry in operator.get("logs", []):
                    key = base64.b64decode(entry.get("log_id", ""))
                    names.setdefault(key, entry.get("description") or entry.get("url", ""))
        return names

    async def certificate(request: Request) -> Response:
        text = request.path_params["serial"]
        serial = parse_serial(text) if len(text) <= 64 else None
        if serial is None:
            return refuse(request, 400, "a serial number is written in hex (at most 20 octets)")
        hits = index.by_serial(serial, limit=SEARCH_ROWS)
        record = ca_store.certificate(serial)
        cert = (record.certificate if record is not None and record.certificate is not None
                else _logged_certificate(db, hits))
        if cert is None and record is None:
            return refuse(request, 404, f"no certificate with serial {serial_text(serial)} "
                                        "in this node's logs or CA")
        names = await log_names()
        return page(request, "certificate.html", title=f"Certificate {serial_text(serial)}",
                    serial=serial_text(serial),
                    cert=describe_certificate(cert) if cert is not None else None,
                    scts=_embedded_scts(cert, names) if cert is not None else [],
                    record_names=record.names if record is not None else [],
                    entries=_entry_rows(hits), status=status_of(record, cert, ca_store))

    async def logs_page(request: Request) -> Response:
        progress = {p.log: p for p in index.progress()}
        rows = []
        for name, lg in logs.logs.items():
            sth = lg.get_sth()
            text = lg.checkpoint()
            if checkpoint is not None:
                try:
                    answer = await checkpoint({"log": name})
                    text = answer.body.decode() if isinstance(answer, Reply) else text
                except TrustchainError:
                    pass
            done = progress.get(name)
            rows.append({"name": name, "origin": lg.origin,
                         "log_id": base64.b64encode(lg.log_id).decode(),
                         "size": sth["tree_size"], "root": sth["sha256_root_hash"],
                         "timestamp": _when(int(str(sth["timestamp"])) or None),
                         "expiry": str(lg.expiry), "checkpoint": text,
                         "signatures": _signatures(text),
                         "indexed": done.indexed if done else 0})
        return page(request, "logs.html", title="Logs", logs=rows)

    async def zones_page(request: Request) -> Response:
        rows = []
        for zone in dns.zones.all():
            state = dns.dnssec.status(zone.origin)
            try:
                ds = [r.to_text() for r in dns.dnssec.ds(zone.origin)[1]]
            except DnsRequestError:
                ds = []
            rows.append({"zone": zone.origin.to_text(), "serial": zone.serial,
                         "signed": state["signed"], "keys": state["keys"], "ds": ds,
                         "algorithms": sorted({k["algorithm"] for k in state["keys"]})
                         or [state["policy"]["algorithm"]],
                         "nsec3": state["policy"]["nsec3"]})
        return page(request, "zones.html", title="Zones", zones=rows)

    async def federation_page(request: Request) -> Response:
        status: dict[str, Any] = {}
        if consensus_status is not None:
            try:
                status = await consensus_status({})
            except TrustchainError as exc:
                return refuse(request, 503, f"the consensus status is unavailable: {exc}")
        if status.get("last_block_time"):
            status["last_block_time"] = str(status["last_block_time"])
        return page(request, "federation.html", title="Federation", status=status)

    async def stylesheet_file(request: Request) -> Response:
        return Response(stylesheet, media_type="text/css",
                        headers={"cache-control": "max-age=3600",
                                 "x-content-type-options": "nosniff"})

    async def to_home(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    async def unknown(request: Request) -> Response:
        return refuse(request, 404, "no such page")

    return [
        Route("/ui", to_home, methods=["GET"]),
        Route("/ui/", home, methods=["GET"]),
        Route("/ui/search", search, methods=["GET"]),
        Route("/ui/certificate/{serial}", certificate, methods=["GET"]),
        Route("/ui/logs", logs_page, methods=["GET"]),
        Route("/ui/zones", zones_page, methods=["GET"]),
        Route("/ui/federation", federation_page, methods=["GET"]),
        Route("/ui/console.css", stylesheet_file, methods=["GET"]),
        Route("/ui/{rest:path}", unknown, methods=["GET"]),
    ]
