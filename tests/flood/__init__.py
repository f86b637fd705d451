"""The flood harness (``make flood-test``, ``python -m tests.flood``): floods on every
listener of a node, over loopback, bounded in count and time, and the p99 latency of
legitimate clients during each beside the quiet one (see :mod:`tests.flood.harness`)."""
