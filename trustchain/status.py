"""Temporary: moved to trustchain.wiring.status."""
from trustchain.wiring.status import node_status, render_status  # noqa: F401
