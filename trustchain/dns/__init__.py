"""Authoritative DNS: the query handler interface and (with the DNS issue) zones and the engine."""
