"""Deterministic simulations that drive the real consensus core (arrives with the consensus issue)."""
