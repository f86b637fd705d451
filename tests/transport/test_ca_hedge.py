"""SCTs from other operators' logs (transport/ca.py ``CaRunner._hedged``): two operators
asked at once, a hedge to the next operator's log when one fails or is slow, a clear
refusal when too few answer.  The other nodes' logs are the edge faked here: coroutines
that answer, fail or hang as told."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

import transport.ca as ca_module
from transport.ca import CaRunner
from trustchain.ct.log import BadSubmission


def remote(behaviour: dict[str, str], asked: list[str]) -> Any:
    async def submit(operator: str, name: str, chain: list[str]) -> bytes:
        ref = f"{operator}/{name}"
        asked.append(ref)
        if behaviour.get(ref) == "fail":
            raise BadSubmission("refused")
        if behaviour.get(ref) == "hang":
            await asyncio.Event().wait()
        return ref.encode()
    return submit


def hedged(refs: list[str], behaviour: dict[str, str]) -> tuple[Any, list[str]]:
    asked: list[str] = []
    runner = SimpleNamespace(remote=remote(behaviour, asked))
    result = asyncio.run(CaRunner._hedged(runner, refs, 2, ["chain"]))  # type: ignore[arg-type]
    return result, asked


def test_two_operators_answer_at_once() -> None:
    got, asked = hedged(["n2/a", "n2/b", "n3/a", "n4/a"], {})
    assert sorted(got) == [("n2/a", b"n2/a"), ("n3/a", b"n3/a")]
    assert asked == ["n2/a", "n3/a"]  # one log of each of two operators, nothing more


def test_a_refusal_moves_on_to_the_next_operator() -> None:
    got, asked = hedged(["n2/a", "n3/a", "n4/a"], {"n3/a": "fail"})
    assert sorted(ref for ref, _ in got) == ["n2/a", "n4/a"]
    assert asked == ["n2/a", "n3/a", "n4/a"]


def test_a_slow_log_gets_a_hedge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ca_module, "HEDGE_AFTER", 0.05)
    got, asked = hedged(["n2/a", "n3/a", "n4/a"], {"n2/a": "hang"})
    assert sorted(ref for ref, _ in got) == ["n3/a", "n4/a"]


def test_too_few_operators_is_a_clear_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ca_module, "HEDGE_AFTER", 0.05)
    monkeypatch.setattr(ca_module, "SCT_BOUND", 0.3)
    with pytest.raises(BadSubmission, match="1 of the 2 operators.*n3/a: refused"):
        hedged(["n2/a", "n3/a", "n3/b"], {"n3/a": "fail", "n3/b": "fail"})
    with pytest.raises(BadSubmission, match="n3/a: no answer within 0.3 s"):
        hedged(["n2/a", "n3/a"], {"n3/a": "hang"})
