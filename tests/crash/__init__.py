"""The crash harness: SIGKILL a node under mixed load, restart it, and check that nothing
it acknowledged was lost (``python -m tests.crash --kills 50``, ``make crash-test``).

:mod:`tests.crash.node` runs the node and every process of the run, :mod:`tests.crash.load`
is the load and its acknowledged writes, :mod:`tests.crash.checks` what must hold after
each restart, :mod:`tests.crash.harness` the loop and its report.
"""
