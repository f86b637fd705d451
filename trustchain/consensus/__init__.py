"""Consensus: the four proofs, and (with the rest of the consensus issue) the BFT state machine.

Pure: no sockets, no clocks, no asyncio; the simulation harness drives the
same code the node runs.
"""
