"""ACME (RFC 8555) for the CA: the protocol's rules as pure code, HTTP at the edge.

:mod:`.problems` the RFC's error documents, :mod:`.jws` the signed request envelope
(RFC 8555 section 6.2, verification by joserfc), :mod:`.server` the resources,
answering requests with responses, :mod:`.store` what it needs of storage (the node's
SQLite is :mod:`trustchain.storage.acme`); the HTTP adapter is
:mod:`trustchain.wiring.acme`.
"""
