"""stoq/1 and DNS-over-QUIC protocol cores: pure, sans-I/O (bytes and QUIC events in, events out)."""
