"""The fuzz suite's targets under hypothesis, with a modest count each (``make test``).

Every parser of bytes from outside the node (tests/fuzz/targets.py) either
takes its input or raises its documented error, the h11 rule; ``make fuzz``
runs the same targets a million times over (``python -m tests.fuzz``).  Here
the inputs are drawn by hypothesis, derandomized, so a failure shrinks and
the run is the same every time.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.engine import check, inputs
from tests.fuzz.targets import FACTORIES, build

#: Examples per target: enough for the mutations to reach past each parser's first checks,
#: few enough that the whole file takes well under a minute on a loaded 2-core machine.
EXAMPLES = 300


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize("name", list(FACTORIES))
def test_target_parses_or_refuses_as_documented(name: str) -> None:
    target = build(name)

    @settings(max_examples=EXAMPLES, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(inputs(target))
    def parse_or_refuse(data: bytes) -> None:
        check(target, data)

    parse_or_refuse()
