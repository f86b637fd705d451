"""``sim run|list``: scenario files run through the real consensus code on a virtual network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trustchain.cli.common import add_command, add_group, add_json, print_json, print_listing
from trustchain.errors import LocalError

if TYPE_CHECKING:
    from simulations.harness import Result, Scenario

#: Width of the progress bar on a terminal, in characters.
BAR = 30


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "sim", "simulate the consensus (the real code, a virtual network)", examples="""
trustchain sim list
trustchain sim run partition --seed 7 --runs 20
trustchain sim run partition --plot partition.png --json
""")
    p = add_command(sub, "run", "run a scenario file; exit 1 if a check fails", cmd_sim_run)
    p.add_argument("scenario", metavar="SCENARIO", help="a name from 'sim list', or a .toml file")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--runs", type=int, default=1, help="runs, with seeds seed, seed+1, ...")
    p.add_argument("--plot", metavar="FILE", help="write commit latency over time (PNG, SVG...)")
    add_json(p)
    add_json(add_command(sub, "list", "the scenarios that ship in simulations/scenarios",
                         cmd_sim_list))


def _load(path: Path) -> Scenario:
    from simulations import harness

    try:
        return harness.load_scenario(path)
    except ValueError as exc:
        raise LocalError(str(exc)) from None


def cmd_sim_list(args: argparse.Namespace) -> int:
    from simulations import harness

    rows = []
    for path in sorted(harness.SCENARIO_DIR.glob("*.toml")):
        scenario = _load(path)
        rows.append({"scenario": path.stem, "validators": scenario.validators,
                     "description": scenario.description})
    print_listing(args, rows, ["scenario", "validators", "description"], "no scenarios")
    return 0


def cmd_sim_run(args: argparse.Namespace) -> int:
    from simulations import harness

    path = harness.find_scenario(args.scenario)
    if not path.exists():
        raise LocalError(f"no scenario {args.scenario!r} (trustchain sim list shows them)")
    scenario = _load(path)
    if args.runs < 1:
        raise LocalError("--runs must be at least 1")
    results = []
    show = sys.stderr.isatty()
    for i in range(args.runs):
        if show:
            done = int(BAR * i / args.runs)
            print(f"\r[{'#' * done}{'.' * (BAR - done)}] run {i + 1}/{args.runs}", end="",
                  file=sys.stderr, flush=True)
        results.append(harness.run(scenario, args.seed + i))
    if show:
        print(f"\r[{'#' * BAR}] {args.runs}/{args.runs} runs" + " " * 10, file=sys.stderr)
    totals = harness.summary(results)
    ok = harness.passed(scenario, results)
    if args.plot:
        try:
            harness.plot(results, Path(args.plot), f"{scenario.name}: commit latency")
        except ImportError:
            raise LocalError("--plot needs matplotlib (pip install matplotlib)") from None
    if args.json:
        print_json({**totals, "scenario": scenario.name, "passed": ok,
                    "violations": [v for r in results for v in r.safety_violations]})
    else:
        _report(args, scenario, results, totals, ok)
    return 0 if ok else 1


def _report(args: argparse.Namespace, scenario: Scenario, results: list[Result],
            totals: dict[str, object], ok: bool) -> None:
    print(f"scenario {scenario.name}: {scenario.validators} validators, "
          f"byzantine {scenario.byzantine or 'none'}, seeds {args.seed}..{args.seed + args.runs - 1}")
    print(f"  decisions          {totals['decisions']} (latency p50 {totals['latency_p50_s']} s, "
          f"p99 {totals['latency_p99_s']} s)")
    print(f"  messages           {totals['messages']}")
    print(f"  safety violations  {totals['safety_violations']}")
    print(f"  live after GST     {totals['live']} of {totals['runs']} runs")
    print(f"  equivocators       {totals['equivocators']} seen, {totals['caught']} with evidence "
          f"({totals['bad_evidence']} invalid)")
    if scenario.expect_violation:
        verdict = "negative control: violation detected" if ok else \
            "negative control FAILED: no violation detected"
    else:
        verdict = "passed" if ok else "FAILED"
    print(f"  {verdict}")
    for result in results:
        for violation in result.safety_violations[:3]:
            print(f"    seed {result.seed}: {violation}")
