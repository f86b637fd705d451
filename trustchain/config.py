"""The node configuration: one pydantic model, loaded once at start.

Sources, lowest priority first:

1. the defaults below (development values: loopback ``::1``, unprivileged
   ports),
2. ``trustchain.toml`` in the data directory,
3. ``TRUSTCHAIN_<FIELD>`` environment variables (lists comma-separated),
4. command-line flags (``--dns-port 5353``).

The result is validated as a whole; every problem is reported with the
source that supplied the bad value.  Production values (ports 53, 853, 443,
80; listening on ``::``) are documented in ``docs/operations.md`` and are
never defaults.

Facts that belong to the network rather than to one node's runtime (the
network name and the zone origin) live in the genesis document; the values
here are only the defaults that ``trustchain init`` offers.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trustchain.ca.ratelimit import DEFAULT_LIMITS
from trustchain.errors import ConfigError

CONFIG_FILE_NAME = "trustchain.toml"
ENV_PREFIX = "TRUSTCHAIN_"

#: Defaults for ``trustchain init``; recorded in the genesis document.
DEFAULT_NETWORK_NAME = "hypermesh"
DEFAULT_ORIGIN = "trust.hypermesh.online."

Port = Annotated[int, Field(ge=0, le=65535)]
#: The HTTP edge's limits (docs/operations.md says what each answers).
Seconds = Annotated[int, Field(ge=1, le=3600)]
HeadBytes = Annotated[int, Field(ge=256, le=1024 * 1024)]
Connections = Annotated[int, Field(ge=1, le=1_000_000)]


class CtLogConfig(BaseModel):
    """One CT log (or one shard of a log by certificate expiry) that the node runs.

    Its key is ``ct-log:<name>`` in the key store, generated on first start;
    its URLs are ``/logs/<name>/...``.  With ``not_after_start`` and/or
    ``not_after_end`` the log only accepts certificates whose notAfter lies in
    ``[start, end)``, as expiry-sharded public logs do.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    not_after_start: AwareDatetime | None = None
    not_after_end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CtLogConfig:
        if (self.not_after_start is not None and self.not_after_end is not None
                and self.not_after_start >= self.not_after_end):
            raise ValueError(f"log {self.name}: not_after_start must be before not_after_end")
        return self


class RateLimitConfig(BaseModel):
    """Overrides one of the CA's rate limits (trustchain/ca/ratelimit.py has the defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Annotated[int, Field(ge=1, le=10**9)]
    period_seconds: Annotated[int, Field(ge=1, le=366 * 86400)]
    burst: Annotated[int, Field(ge=1, le=10**9)] | None = None


RATE_LIMIT_NAMES = tuple(DEFAULT_LIMITS)


class NodeConfig(BaseModel):
    """Runtime configuration of one node.  Port 0 asks the OS for a free port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: list[str] = Field(
        default_factory=lambda: ["::1"],
        min_length=1,
        description="IP addresses to bind; '::' is dual-stack where the OS allows.",
    )
    peers: list[str] = Field(
        default_factory=list, max_length=1000,
        description="QUIC addresses ([ADDR]:PORT or HOST:PORT) of the other nodes of the "
        "federation: the consensus connects to each with the node certificate (mutual TLS) "
        "and learns who it is from the certificate.  Empty: a single-node federation.",
    )
    consensus_commit_pause_ms: Annotated[int, Field(ge=0, le=60_000)] = Field(
        250, description="After a block is decided, the pause before the next height starts "
        "(late votes still count; blocks are not made faster than this).",
    )
    consensus_idle_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        10, description="With no operation waiting, how long the federation waits before "
        "making an empty block anyway (0: never waits: a block every commit pause).",
    )
    admission_max_stake: Annotated[int, Field(ge=0, le=2**40)] = Field(
        0, description="The most stake this validator endorses for a joining node "
        "(trustchain join --stake); 0: joining nodes are admitted without stake, and become "
        "validators only by a change the validators' operators ask for "
        "(trustchain federation validator).",
    )
    advertise: list[str] = Field(
        default_factory=list, max_length=4,
        description="The IP addresses under which this node's name in the federation's "
        "zones (<node>.nodes.<origin>) is published, for resolvers to reach its DNS.  Empty: "
        "the listen addresses that are not wildcards (with only '::', the loopback address, "
        "which suits a single machine only: set this on a public node).",
    )
    serve_federation_zones: bool = Field(
        True, description="Answer DNS queries for the federation's zones (the origin and "
        "the hosted networks').  false ('trustchain init --no-zone'): this node's operator "
        "answers for them elsewhere; the node still keeps them (ACME reads them), takes "
        "part in their consensus and signing, and is named in their NS sets, so keep it "
        "true on every node of a federation of several.",
    )
    dns_port: Port = Field(8053, description="DNS over UDP and TCP (production: 53).")
    quic_port: Port = Field(8853, description="QUIC: ALPNs doq, stoq/1, h3 (production: 853).")
    https_port: Port = Field(8443, description="REST API over HTTPS/1.1 (production: 443).")
    http_port: Port = Field(8080, description="Plain HTTP: public reads (production: 80).")
    quic_idle_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        60, description="QUIC connections idle this long are closed."
    )
    quic_max_connections_per_address: Annotated[int, Field(ge=1, le=100_000)] = Field(
        64, description="Open QUIC connections allowed from one client address."
    )
    quic_retry_above_per_second: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        100, description="New QUIC connections per second above which clients must pass "
        "a stateless Retry (address validation); 0 validates every client.",
    )
    quic_max_streams_in_flight: Annotated[int, Field(ge=1, le=10_000)] = Field(
        100, description="Requests (DoQ queries, stoq/1 and HTTP/3 requests) one connection "
        "may have in flight; more are refused (DOQ_EXCESSIVE_LOAD, stoq/1 status 429, "
        "H3_REQUEST_REJECTED).",
    )
    dns_tcp_idle_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        10, description="DNS over TCP connections idle this long are closed."
    )
    dns_rate_limit: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        20, description="Response rate limiting (RRL) over UDP, on by default (20, the "
        "production value): responses per second, with a burst of as many, per client "
        "prefix (IPv4 /24, IPv6 /56) and response class (the query name and type for "
        "answers, the rcode alone for errors); TCP, DoQ and stoq/1 are never limited.  A "
        "network whose address is spoofed gets at most that many full answers a second per "
        "class (python -m tests.flood: a 5,000 queries/s reflection flood got back 0.5x the "
        "bytes it sent, 7.2x without).  0: off, e.g. for a benchmark from one address.",
    )
    dns_rate_limit_slip: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="Over the limit, every Nth response is sent truncated (TC) instead "
        "of dropped, so real clients retry over TCP (0: drop all; 2, as BIND's default: "
        "half slip, the rest are dropped).",
    )
    http_max_request_line_bytes: HeadBytes = Field(
        8192, description="Longest HTTP request line (method, target, version); longer is "
        "answered 414 and the connection closed.",
    )
    http_max_header_bytes: HeadBytes = Field(
        32768, description="Largest header section of an HTTP request (HTTP/3: encoded, and "
        "decoded); larger is answered 431 and the connection closed (HTTP/3: the stream is "
        "reset with H3_EXCESSIVE_LOAD while the section is still arriving).",
    )
    http_max_headers: Annotated[int, Field(ge=8, le=10_000)] = Field(
        100, description="Most header fields in one HTTP or HTTP/3 request; more are answered 431.",
    )
    http_header_timeout_seconds: Seconds = Field(
        10, description="Time for a request's head to arrive, from the connection (TLS "
        "handshake included) or from the request's first byte; later: 408 and closed, or "
        "closed if nothing came (HTTP/3: the stream reset with H3_REQUEST_REJECTED).",
    )
    http_body_timeout_seconds: Seconds = Field(
        30, description="Longest wait for the next piece of a request body while the "
        "application reads it; longer: 408 and the connection closed (HTTP/3: 408 on the stream).",
    )
    http_keepalive_timeout_seconds: Seconds = Field(
        15, description="HTTP(S) connections idle this long between requests are closed."
    )
    http_max_connections_per_address: Connections = Field(
        64, description="Open connections from one client address (IPv6: one /64) on each "
        "HTTP(S) listener; more get 503 with Retry-After (HTTPS: closed before the handshake).",
    )
    http_max_connections: Connections = Field(
        1024, description="Open connections on each HTTP(S) listener (at most a quarter of "
        "the process's descriptor limit); more get 503 with Retry-After, as above.",
    )
    stoq_max_message_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = Field(
        1024 * 1024, description="Largest stoq/1 message accepted on one stream."
    )
    ct_logs: list[CtLogConfig] = Field(
        default_factory=lambda: [CtLogConfig(name="a"), CtLogConfig(name="b")],
        min_length=1,
        description="CT logs this node runs: names, or [[ct_logs]] tables with name, "
        "not_after_start and not_after_end to shard by certificate expiry.",
    )
    ct_tiles_dir: Path | None = Field(
        None, description="Where the static-ct-api files go, one directory per log, for a "
        "web server to serve (relative to the data directory; default: ct-tiles).",
    )
    ca_url: Annotated[str, Field(pattern=r"^http://[^/\s?#]+$")] | None = Field(
        None, description="Public http:// base URL the CA writes into certificates for its "
        "CRLs, OCSP responder and issuer certificates (default: "
        "http://<node-id>.nodes.<origin>, with the HTTP port unless it is 80).",
    )
    ca_crl_shards: Annotated[int, Field(ge=1, le=256)] = Field(
        1, description="CRL shards per issuer for new certificates (partitioned CRLs, as "
        "Let's Encrypt's Boulder publishes them); each certificate names its shard's URL.",
    )
    ca_lint: bool = Field(
        False, description="Lint every precertificate with pkilint (CA/B Forum profile) before "
        "it is logged, and refuse to issue on any finding at WARNING or above (slower).",
    )
    ca_workers: Annotated[int, Field(ge=0, le=64)] | None = Field(
        None, description="Worker processes for CSR checks, certificate signatures and CT "
        "chain verification, so they use the other cores (0: in the node's own process; "
        "default: one fewer than the CPUs, at least 0).",
    )
    ca_rate_limits: dict[str, RateLimitConfig] = Field(
        default_factory=dict, description="Overrides of the CA's rate limits, as "
        "[ca_rate_limits.<name>] tables with count, period_seconds and burst; names: "
        + ", ".join(RATE_LIMIT_NAMES) + " (defaults follow Let's Encrypt's published limits).",
    )
    acme_http01_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        80, description="The port the ACME server connects to for http-01 challenges (RFC "
        "8555 8.3 says 80; another only for tests and private setups).",
    )
    acme_terms_of_service: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = Field(
        None, description="The URL of the terms ACME clients agree to (the directory's "
        "meta.termsOfService); set, new accounts must agree (termsOfServiceAgreed).",
    )
    acme_website: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = Field(
        None, description="The CA's website, shown in the ACME directory's meta.",
    )
    acme_tls_alpn01_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        443, description="The port the ACME server connects to for tls-alpn-01 challenges "
        "(RFC 8737 says 443; another only for tests and private setups).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text", description="How the node writes its log to stderr: text lines, or json: "
        "one JSON object per line (time, level, logger, event, request fields, exception).",
    )
    access_log: bool = Field(
        False, description="Log every HTTP request (HTTP, HTTPS, HTTP/3) at info: client, "
        "transport, method, path, status and duration (fields of its own with "
        "log_format = json).  Off by default: CT and ACME take thousands a second.",
    )
    shutdown_grace_seconds: Annotated[int, Field(ge=0, le=600)] = Field(
        5, description="How long in-flight requests may run after SIGINT/SIGTERM."
    )

    def worker_count(self) -> int:
        """``ca_workers``, or one fewer than the CPUs this process may use."""
        if self.ca_workers is not None:
            return self.ca_workers
        return max(0, len(os.sched_getaffinity(0)) - 1)

    @field_validator("ct_logs", mode="before")
    @classmethod
    def _log_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("ct_logs")
    @classmethod
    def _distinct_logs(cls, value: list[CtLogConfig]) -> list[CtLogConfig]:
        names = [log.name for log in value]
        if len(set(names)) != len(names):
            raise ValueError("log names are listed more than once")
        return value

    @field_validator("ca_rate_limits")
    @classmethod
    def _known_limits(cls, value: dict[str, RateLimitConfig]) -> dict[str, RateLimitConfig]:
        unknown = sorted(set(value) - set(RATE_LIMIT_NAMES))
        if unknown:
            raise ValueError(f"unknown rate limits {', '.join(unknown)}; "
                             f"known: {', '.join(RATE_LIMIT_NAMES)}")
        return value

    @field_validator("peers")
    @classmethod
    def _peer_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"peer {item!r}: expected [ADDR]:PORT or HOST:PORT")
        if len(set(value)) != len(value):
            raise ValueError("peers are listed more than once")
        return [item.strip() for item in value]

    @field_validator("listen", "advertise")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_address(item.strip().strip("[]"))))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        if len(set(out)) != len(out):
            raise ValueError("addresses are listed more than once")
        return out

    def advertised(self) -> list[str]:
        """The addresses published as this node's in the federation's zones."""
        specific = [a for a in self.listen if not ipaddress.ip_address(a).is_unspecified]
        return self.advertise or specific or [self.local_address()]

    def local_address(self) -> str:
        """An address on which a client on this machine reaches the node."""
        first = ipaddress.ip_address(self.listen[0])
        if first.is_unspecified:
            return "::1" if first.version == 6 else "127.0.0.1"
        return str(first)

    @model_validator(mode="after")
    def _distinct_ports(self) -> NodeConfig:
        for proto, names in (
            ("TCP", ("dns_port", "https_port", "http_port")),
            ("UDP", ("dns_port", "quic_port")),
        ):
            seen: dict[int, str] = {}
            for name in names:
                port = getattr(self, name)
                if port and port in seen:
                    raise ValueError(f"{name} and {seen[port]} both use {proto} port {port}")
                seen[port] = name
        return self


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in NodeConfig.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        is_list = getattr(field.annotation, "__origin__", None) is list
        values[name] = [part.strip() for part in raw.split(",") if part.strip()] if is_list else raw
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_config(
    data_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Load, merge and validate the configuration of the node in ``data_dir``.

    :param overrides: values from command-line flags (``None`` values ignored).
    :param environ: the environment (defaults to ``os.environ``).
    :raises ConfigError: naming the source and field of every invalid value.
    """
    path = data_dir / CONFIG_FILE_NAME
    layers = [
        (str(path), _read_toml(path)),
        ("environment", _from_env(os.environ if environ is None else environ)),
        ("command line", {k: v for k, v in (overrides or {}).items() if v is not None}),
    ]
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            merged[key] = value
            origin[key] = source
    try:
        return NodeConfig.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            where = origin.get(field, "configuration")
            if err["type"] == "extra_forbidden":
                setting = field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                                          for p in err["loc"][1:])
                problems.append(f"{where}: unknown setting {setting!r}")
            else:
                label = ENV_PREFIX + field.upper() if where == "environment" else field
                problems.append(f"{where}: {label or 'settings'}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


#: TOML example values for the settings that default to None (unset).
_EXAMPLES = {
    "acme_terms_of_service": '"https://ca.example.net/terms"',
    "acme_website": '"https://ca.example.net"',
    "ct_tiles_dir": '"/srv/trustchain/ct"',
    "ca_url": '"http://ca.example.net"',
    "ca_workers": "1",
}


def default_config_text(**settings: Any) -> str:
    """The commented ``trustchain.toml`` that ``trustchain init`` writes (with ``settings``
    in place of their defaults)."""
    defaults = NodeConfig(**settings)
    lines = [
        "# TrustChain node configuration.",
        "# Overridden by TRUSTCHAIN_<SETTING> environment variables and command-line flags.",
        "# These are development defaults; see docs/operations.md for production values.",
        "",
    ]
    for name, field in NodeConfig.model_fields.items():
        value = getattr(defaults, name)
        if field.description:
            lines.append(f"# {field.description}")
        if value is None:  # an optional setting: shown commented out, with an example value
            lines.append(f"# {name} = {_EXAMPLES[name]}")
            continue
        if name == "ct_logs":
            value = [log.name for log in value]
        if isinstance(value, dict):
            lines.append(f"# {name}.domain = {{ count = 50, period_seconds = 604800 }}")
            continue
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, list):
            rendered = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        elif isinstance(value, str):
            rendered = f'"{value}"'
        else:
            rendered = str(value)
        lines.append(f"{name} = {rendered}")
    lines += [
        "",
        "# To shard the CT logs by certificate expiry, as public logs do, replace",
        "# ct_logs above with tables here at the end (TOML tables follow all plain keys):",
        "# [[ct_logs]]",
        '# name = "a2027h1"',
        "# not_after_start = 2027-01-01T00:00:00Z",
        "# not_after_end = 2027-07-01T00:00:00Z",
        "# [[ct_logs]]",
        '# name = "b2027h1"',
        "# not_after_start = 2027-01-01T00:00:00Z",
        "# not_after_end = 2027-07-01T00:00:00Z",
    ]
    return "\n".join(lines) + "\n"
