"""Guards against the audit's findings creeping back into product code.

The audited original shipped `default_for_testing()` in production paths,
verifiers that returned true, and hard-coded localhost answers.  These tests
scan every module that ships (trustchain/, transport/, bootstrap/,
simulations/) and fail on any of them; each rule is itself tested on a
snippet that breaks it.  The last rule keeps the import graph flowing one
way: CLI and wiring → transport → local state → service cores → base.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import REPO

PRODUCT_PACKAGES = ("trustchain", "transport", "bootstrap", "simulations")
#: The one module allowed to name loopback: the development defaults.
LOOPBACK_ALLOWED = {Path("trustchain/config.py")}
#: Pure cores: no I/O, no wall clock, no ambient randomness (design.md).
PURE_CORES = (
    "trustchain/dns", "trustchain/ca", "trustchain/ct", "trustchain/consensus", "trustchain/stoq",
)

_BYPASS_WORDS = re.compile(r"default_for_testing|for_testing\(|skip_verif|insecure_skip|accept_all",
                           re.I)
_VERIFIER_NAME = re.compile(r"^_?(verify|validate|check|is_valid|authenticate|authori[sz]e)", re.I)
_LOOPBACK = re.compile(r"^\[?(localhost|127(\.\d+){3}|::1|0:0:0:0:0:0:0:1)\]?(:\d+)?$", re.I)


#: Module prefixes → the group they belong to (the longest prefix wins).
GROUPS = {
    "trustchain.cli": "cli", "trustchain.__main__": "cli",
    "trustchain.wiring": "wiring",
    "bootstrap": "bootstrap",
    "simulations": "simulations",
    "transport": "transport",
    # Local state: SQLite implementations of the cores' storage contracts, the key
    # store, the configuration and the data directory.
    "trustchain.storage": "state", "trustchain.keystore": "state", "trustchain.config": "state",
    "trustchain.datadir": "state", "trustchain.passphrase": "state",
    # The service cores: pure protocol logic.
    "trustchain.dns": "dns", "trustchain.ca": "ca", "trustchain.ct": "ct",
    "trustchain.consensus": "consensus", "trustchain.stoq": "stoq",
    # What every layer shares: errors, canonical JSON, identity, problem documents.
    "trustchain": "base",
}
#: Outer groups may import inner ones (a higher rank imports a lower), never the reverse.
RANK = {"cli": 6, "wiring": 5, "bootstrap": 4, "simulations": 4, "transport": 3, "state": 2,
        "dns": 1, "ca": 1, "ct": 1, "consensus": 1, "stoq": 1, "base": 0}
#: Cores are independent of each other, but for these codecs: the CA logs
#: precertificates (ct.structs, ct.precert), consensus evidence carries CT heads.
BETWEEN_CORES = {("ca", "ct"), ("consensus", "ct")}


def group_of(module: str) -> str | None:
    """The group of a product module (None: a third-party or standard module)."""
    for prefix in sorted(GROUPS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return GROUPS[prefix]
    return None


def import_violations(source: str, relpath: Path) -> list[str]:
    """Imports that run against the layering (every import, also inside functions)."""
    here = group_of(".".join(relpath.with_suffix("").parts))
    if here is None:
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module]
        else:
            continue
        for target in targets:
            there = group_of(target)
            if there is None or there == here:
                continue
            if RANK[there] < RANK[here] or (here, there) in BETWEEN_CORES:
                continue
            found.append(f"{relpath}:{node.lineno}: {here} may not import {target} ({there})")
    return found


def product_files() -> list[Path]:
    return sorted(p for pkg in PRODUCT_PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _returns_constant_true(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Return)
        and isinstance(node.value, ast.Constant)
        and node.value.value in (True, 1)
    )


def violations(source: str, relpath: Path) -> list[str]:
    found = []
    for number, line in enumerate(source.splitlines(), 1):
        if _BYPASS_WORDS.search(line):
            found.append(f"{relpath}:{number}: testing bypass: {line.strip()}")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _VERIFIER_NAME.search(
            node.name
        ):
            body = [
                stmt for stmt in node.body
                if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
            ]
            if len(body) == 1 and (_returns_constant_true(body[0]) or isinstance(body[0], ast.Pass)):
                found.append(f"{relpath}:{node.lineno}: verifier {node.name}() checks nothing")
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            body = node.value.body
            if any(_VERIFIER_NAME.search(n) for n in names) and isinstance(body, ast.Constant) \
                    and body.value in (True, 1):
                found.append(f"{relpath}:{node.lineno}: verifier {names[0]} checks nothing")
        if (
            relpath not in LOOPBACK_ALLOWED
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _LOOPBACK.match(node.value.strip())
        ):
            found.append(f"{relpath}:{node.lineno}: hard-coded loopback {node.value!r}")
    if any(str(relpath).startswith(core + "/") for core in PURE_CORES):
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in {"asyncio", "socket", "selectors", "subprocess"}:
                    found.append(f"{relpath}:{node.lineno}: I/O import {name} in a pure core")
                if name.split(".")[0] in {"secrets", "random"}:
                    found.append(f"{relpath}:{node.lineno}: ambient randomness {name} in a "
                                 "pure core (pass it in)")
            if isinstance(node, ast.Attribute) and (
                isinstance(node.value, ast.Name) and (node.value.id, node.attr) in {
                    ("time", "time"), ("time", "monotonic"), ("os", "urandom"),
                    ("datetime", "now"), ("datetime", "utcnow"), ("random", "random"),
                }
            ):
                found.append(f"{relpath}:{node.lineno}: ambient {node.value.id}.{node.attr} "
                             "in a pure core (pass it in)")
    return found


def test_product_code_is_clean() -> None:
    files = product_files()
    assert len(files) > 10
    problems = [p for f in files for p in violations(f.read_text(), f.relative_to(REPO))]
    assert problems == []


def test_imports_flow_one_way() -> None:
    problems = [p for f in product_files()
                for p in import_violations(f.read_text(), f.relative_to(REPO))]
    assert problems == []


@pytest.mark.parametrize(
    ("snippet", "path", "expected"),
    [
        ("from transport.client import connect\n", "trustchain/ca/x.py", "ca may not import"),
        ("from trustchain.stoq.router import BadRequest\n", "trustchain/dns/x.py",
         "dns may not import trustchain.stoq.router"),
        ("import trustchain.storage.ca\n", "trustchain/ca/authority.py", "(state)"),
        ("def f():\n    from trustchain.wiring.serve import run\n", "transport/x.py",
         "transport may not import trustchain.wiring.serve"),
        ("from bootstrap.genesis import X\n", "trustchain/consensus/x.py", "(bootstrap)"),
        ("from trustchain.cli import main\n", "trustchain/wiring/x.py", "(cli)"),
    ],
)
def test_the_import_rule_catches_a_violation(snippet: str, path: str, expected: str) -> None:
    assert any(expected in v for v in import_violations(snippet, Path(path)))


def test_the_import_rule_allows_the_layering() -> None:
    allowed = ("import asyncio\nfrom trustchain.ct.structs import SCT\n"
               "from trustchain.errors import RemoteError\nfrom trustchain.identity import Peer\n")
    assert import_violations(allowed, Path("trustchain/ca/x.py")) == []
    assert import_violations("from trustchain.ca.authority import CaError\n"
                             "from trustchain.storage.ca import CaStore\n",
                             Path("transport/x.py")) == []


@pytest.mark.parametrize(
    ("snippet", "path", "expected"),
    [
        ("def default_for_testing():\n    return 1\n", "trustchain/x.py", "testing bypass"),
        ("def verify(sig):\n    '''Looks real.'''\n    return True\n", "trustchain/x.py",
         "checks nothing"),
        ("class P:\n    def check_proof(self, p):\n        pass\n", "bootstrap/x.py",
         "checks nothing"),
        ("validate = lambda *a: True\n", "transport/x.py", "checks nothing"),
        ("HOST = '127.0.0.1'\n", "transport/x.py", "hard-coded loopback"),
        ("peer = '[::1]:8853'\n", "trustchain/x.py", "hard-coded loopback"),
        ("import asyncio\n", "trustchain/dns/answer.py", "I/O import"),
        ("import time\nt = time.time()\n", "trustchain/ct/log.py", "ambient time.time"),
        ("import os\nr = os.urandom(16)\n", "trustchain/consensus/x.py", "ambient os.urandom"),
        ("import secrets\n", "trustchain/ca/profiles.py", "ambient randomness secrets"),
    ],
)
def test_each_rule_catches_its_violation(snippet: str, path: str, expected: str) -> None:
    assert any(expected in v for v in violations(snippet, Path(path)))


def test_rules_allow_honest_code() -> None:
    honest = (
        "def verify(sig, key, msg):\n    key.verify(sig, msg)\n    return True\n"
        "LISTEN = '::'\n"
    )
    assert violations(honest, Path("trustchain/x.py")) == []
    assert violations("HOST = '::1'\n", Path("trustchain/config.py")) == []
