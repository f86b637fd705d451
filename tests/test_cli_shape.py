"""The command line's shape, walked from its parser: ``--json`` on every listing and
``show`` command, examples that parse in every group's ``--help``, and TXT values taken
as the user means them (checked by dnspython, which reads what the node stores)."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from trustchain.cli import build_parser
from trustchain.cli.dns import record_data

#: Leaf commands that list or show something: each takes --json.
LISTING = {"list", "show", "status", "logs", "get-sth", "ds"}


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse._SubParsersAction]:
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
          ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in _subparsers(parser):
        for name, child in action.choices.items():
            yield from _walk(child, (*path, name))


def test_every_listing_and_show_command_takes_json() -> None:
    listings = [(path, parser) for path, parser in _walk(build_parser())
                if path and path[-1] in LISTING and parser.get_default("func") is not None]
    assert len(listings) >= 15
    missing = [" ".join(path) for path, parser in listings
               if "--json" not in {o for a in parser._actions for o in a.option_strings}]
    assert not missing, f"no --json: {missing}"


def test_every_group_shows_examples_that_parse() -> None:
    top = build_parser()
    groups = [(path, parser) for path, parser in _walk(top)
              if path and _subparsers(parser) and parser.get_default("func") is None]
    assert len(groups) >= 14
    for path, parser in groups:
        epilog = parser.epilog or ""
        assert epilog.startswith("examples:"), f"trustchain {' '.join(path)} has no examples"
        assert "examples:" in parser.format_help()
        lines = epilog.splitlines()[1:]
        assert any(f"trustchain {' '.join(path)} " in line for line in lines), path
        for line in lines:
            words = shlex.split(line, comments=True)
            if ">" in words:  # a shell redirection of the output
                words = words[:words.index(">")]
            assert words[0] == "trustchain", line
            try:
                top.parse_args(words[1:])
            except SystemExit:
                raise AssertionError(f"the example does not parse: {line}") from None


def _strings(data: str) -> list[bytes]:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, data)
    return list(rdata.strings)  # type: ignore[attr-defined]


def test_txt_values_are_strings_as_meant() -> None:
    assert _strings(record_data("TXT", ["hello world"])) == [b"hello world"]
    assert _strings(record_data("TXT", ["hello", "world"])) == [b"hello", b"world"]
    assert _strings(record_data("TXT", ['"hello" "world"'])) == [b"hello", b"world"]
    assert _strings(record_data("TXT", ["x" * 600])) == [b"x" * 255, b"x" * 255, b"x" * 90]
    assert record_data("AAAA", ["2001:db8::1"]) == "2001:db8::1"
    assert record_data("MX", ["10", "mail.example.net."]) == "10 mail.example.net."


@given(st.lists(st.text(max_size=600), min_size=1, max_size=4))
def test_any_txt_arguments_become_their_bytes_in_255_byte_strings(values: list[str]) -> None:
    data = record_data("TXT", values)
    if all(len(v) >= 2 and v.startswith('"') and v.endswith('"') for v in values):
        return  # taken as written in zone-file form
    expected = [raw[i:i + 255] for raw in (v.encode() for v in values)
                for i in range(0, max(len(raw), 1), 255)]
    assert _strings(data) == expected
