"""The wiring: the node's composition root, its method tables and ``serve``.

Nothing here is protocol logic.  :mod:`~trustchain.wiring.node` opens a data
directory and builds the services from their cores, storage and key-store
bindings (:mod:`~trustchain.wiring.keys`); the ``*_api`` modules are the
services' method tables, served over stoq/1, HTTP and HTTP/3 alike
(:mod:`transport.methods`); :mod:`~trustchain.wiring.serve` starts the
listeners and runs until a signal.  Imports flow one way: the CLI and this
package → transport → the service cores → codecs, storage contracts, errors
(``tests/test_hygiene.py`` checks).
"""
