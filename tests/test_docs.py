"""The docs name tests as their evidence (docs/security.md cites one per claim): every
test they name must exist, so a renamed or deleted test cannot leave a claim unbacked."""

from __future__ import annotations

import re

import pytest

from tests.support import REPO

_CITED = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?")


def _citations() -> list[tuple[str, str, str]]:
    found = []
    for doc in sorted((REPO / "docs").glob("*.md")):
        for path, name in _CITED.findall(doc.read_text()):
            found.append((doc.name, path, name))
    return found


def test_the_docs_cite_tests() -> None:
    assert len({c for c in _citations() if c[0] == "security.md"}) > 100


@pytest.mark.parametrize(("doc", "path", "name"), sorted(set(_citations())))
def test_every_cited_test_exists(doc: str, path: str, name: str) -> None:
    source = REPO / path
    assert source.is_file(), f"{doc} cites {path}, which does not exist"
    if name:
        assert re.search(rf"^(?:async )?def {name}\(", source.read_text(), re.M), (
            f"{doc} cites {path}::{name}, which does not exist")
