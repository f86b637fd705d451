"""Temporary: moved to trustchain.wiring (removed once the CLI package lands)."""
from trustchain.wiring.serve import run  # noqa: F401
