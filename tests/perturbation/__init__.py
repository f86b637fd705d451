"""The perturbation harness (``tests/test_perturbation.py``, ``make soak``,
``python -m tests.perturbation --minutes M``): a devnet of real node processes whose
QUIC traffic between validators goes through loopback UDP proxies, disturbed by pauses
(SIGSTOP/SIGCONT), kills (SIGKILL and restart), partitions, loss and delay, in the spirit
of CometBFT's e2e runner and Jepsen.

:mod:`tests.perturbation.proxy` is the proxy and its controls, :mod:`.harness` the devnet
wired through it, :mod:`.invariants` what must hold after every fault, :mod:`.soak` the
random-fault loop and its report, :mod:`.findings` the stalls it found, replayed.
"""
