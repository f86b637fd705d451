"""The fuzz suite: every parser of bytes from outside the node, under the h11 rule.

``python -m tests.fuzz --examples N`` (``make fuzz``) spreads ``N`` examples
over the targets of :mod:`tests.fuzz.targets` and prints each target's
count, refusals and failures; ``tests/test_fuzz.py`` runs the same targets
with hypothesis and a modest count inside ``make test``.
"""
