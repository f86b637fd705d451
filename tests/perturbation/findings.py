"""``python -m tests.perturbation.findings restarts|long-partition``: the two stalls the
harness found in the consensus as first shipped, each replayed on a fresh proxied devnet.
Exit 0 if the federation commits again within :data:`BOUND`, 1 if it stays stalled.
Both stalled for good before commit e26703a (validators send their messages of the
current height again every second and to a peer as it connects; peer connections ping
and close after 5 s of silence); since, both recover (docs/federation.md,
"Perturbation harness").

* ``restarts``: node-2 is killed and restarted, catches up, and within 30 s node-1 is
  killed and restarted.  Before the fix the others did not notice node-2's restart
  (their QUIC connections to the dead process stayed "connected" until the 30 s idle
  timeout, and what they pushed on them was lost), so node-2 fell behind again and
  node-1's death left two validators in step; the four then stopped at one height,
  split over two rounds, each waiting in the prevote step for votes sent once, before
  the others could hear them, and never again.
* ``long-partition``: a 2|2 partition that leaves every node at the same height, held
  40 s (longer than QUIC's idle timeout: the connections die and are opened again).
  Before the fix no validator sent its votes of the stalled round again, none had 2/3
  of the prevotes that start the prevote timeout, and no node had a block another
  lacked (which the catch-up on reconnecting would fetch, starting a new height).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.perturbation.harness import Devnet, LivenessError, create, wait_until

#: How long the federation gets to commit again after the last fault.
BOUND = 90.0
#: Held longer than the QUIC client's idle timeout (30 s).
LONG_PARTITION = 40.0


def restarts(devnet: Devnet) -> None:
    devnet.kill("node-2")
    time.sleep(5.0)  # down for a while: the others commit without it
    devnet.up()
    top = max(devnet.heights().values())
    wait_until("node-2 caught up", lambda: devnet.height("node-2") >= top, 30.0)
    time.sleep(3.0)  # the others go on; node-2 does not hear them
    devnet.kill("node-1")
    time.sleep(5.0)
    devnet.up()


def long_partition(devnet: Devnet) -> None:
    """A cut that leaves one node a height ahead heals anyway (the others fetch that
    block when they reconnect, and start a new height): cut again until every node
    holds the same height, then hold it."""
    for _attempt in range(20):
        devnet.partition(devnet.names[:2], devnet.names[2:])
        time.sleep(1.0)  # votes in flight at the cut land, or not: no event to wait for
        if len(set(devnet.heights().values())) == 1:
            break
        devnet.heal()
        devnet.recovery(60.0, beyond=1)
    time.sleep(LONG_PARTITION)  # the partition's length is the fault itself
    devnet.heal()


SCENARIOS = {"restarts": restarts, "long-partition": long_partition}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perturbation.findings",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trustchain-finding-") as scratch:
        devnet = create(Path(scratch) / "net", nodes=4, seed=1)
        try:
            devnet.up()
            devnet.recovery(60.0, beyond=3)
            SCENARIOS[args.scenario](devnet)
            try:
                took = devnet.recovery(BOUND, beyond=1)
            except LivenessError as exc:
                print(f"{args.scenario}: stalled: {exc}")
                for name in devnet.names:
                    status = devnet.consensus_status(name)
                    print(f"  {name}: committed {status['height']}, round {status['round']} "
                          f"({status['step']})")
                return 1
            print(f"{args.scenario}: committing again {took:.1f} s after the last fault")
            return 0
        finally:
            devnet.close()


if __name__ == "__main__":
    sys.exit(main())
