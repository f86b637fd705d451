#!/usr/bin/env python3
"""Consensus at scale in the simulation: 100 validators, 100 decisions, real signatures.

Runs ``simulations.harness`` (the node's own Tendermint code) with
``--validators`` honest validators until each has decided ``--decisions``
blocks, on a network with 10-50 ms latency.  Every vote, proposal and
commit certificate is Ed25519-signed and verified; one signature cache is
shared by all simulated validators, so each distinct signature is verified
once (verification is a pure function of key, message and signature, so the
cache changes no outcome).  Prints wall time, messages per second, and the
same run's baseline: the cost of verifying each distinct signature once
without any consensus logic.  Target: < 60 s.

    python benchmarks/sim_scale.py [--validators 100] [--decisions 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from simulations.harness import Scenario, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scenario = Scenario(name="scale", validators=args.validators, heights=args.decisions,
                        latency=(0.01, 0.05), deadline=10_000.0)
    started = time.perf_counter()
    result = run(scenario, args.seed)
    elapsed = time.perf_counter() - started
    decided = min(len(v) for v in result.decided.values())
    print(f"{args.validators} validators, {decided} decisions each (target {args.decisions}): "
          f"{elapsed:.1f} s wall, target < 60 s")
    print(f"messages delivered: {result.messages:,} = {result.messages / elapsed:,.0f} per second; "
          f"simulated time {result.finish_time:.1f} s; safety violations "
          f"{len(result.safety_violations)}; live {result.live}")
    # Baseline, same run: verifying each distinct signature once, nothing else.
    signatures = args.validators * 2 * decided + decided  # prevotes, precommits, proposals
    key = ed25519.Ed25519PrivateKey.generate()
    message = b"x" * 120
    signature = key.sign(message)
    public = key.public_key()
    t = time.perf_counter()
    for _ in range(min(signatures, 50_000)):
        public.verify(signature, message)
    per = (time.perf_counter() - t) / min(signatures, 50_000)
    print(f"baseline: {signatures:,} distinct signatures verified once each would take "
          f"{signatures * per:.1f} s ({per * 1e6:.0f} us each)")
    return 0 if result.ok and decided >= args.decisions else 1


if __name__ == "__main__":
    sys.exit(main())
