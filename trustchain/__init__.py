"""TrustChain: authoritative DNS, a software-only CA and CT logs in one QUIC node."""

__version__ = "0.1.0"
