"""CAA (RFC 8659) with the ACME parameters of RFC 8657, decided before issuance. Pure: the
caller looks records up (the node's own zones) through ``lookup``.

The relevant record set of a name is the first non-empty CAA RRset found climbing from
the name towards the root (8659 section 3).  Without one, any CA may issue.  A
critical property (flag bit 128) whose tag this CA does not know forbids issuance
(section 4.1).  For a wildcard name, ``issuewild`` properties decide when there are
any, else ``issue`` ones (4.3).  If the relevant tags are there, one must name this
CA (an identity from the directory's ``caaIdentities``), and its ``accounturi`` and
``validationmethods`` parameters, if given, must match the account and the method
that validated the name (8657 sections 3 and 4).  An empty value (``issue ";"``)
names no CA.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from trustchain.ca.acme.problems import AcmeProblem

#: A CAA record as ``(flags, tag, value)``.
Record = tuple[int, str, str]
KNOWN_TAGS = {"issue", "issuewild", "iodef", "contactemail", "contactphone"}
CRITICAL = 128
_PARAMETER = re.compile(r"^([A-Za-z0-9]+)=([\x21-\x3a\x3c-\x7e]*)$")


def relevant(name: str, lookup: Callable[[str], Sequence[Record]]) -> tuple[str, list[Record]]:
    """The owner and records of the relevant CAA RRset of ``name`` (none: empty)."""
    labels = name.rstrip(".").split(".")
    for i in range(len(labels)):
        owner = ".".join(labels[i:])
        found = list(lookup(owner))
        if found:
            return owner, found
    return "", []


def _parse_issue(value: str) -> tuple[str, dict[str, str]] | None:
    """``issuer-domain-name [; key=value ...]``; None for a value that does not parse
    (it then authorizes no one)."""
    domain, _, rest = value.partition(";")
    parameters: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(";"))):
        matched = _PARAMETER.match(item)
        if not matched:
            return None
        parameters[matched[1].lower()] = matched[2]
    return domain.strip().lower().rstrip("."), parameters


def check(name: str, lookup: Callable[[str], Sequence[Record]], identities: Sequence[str],
          account_uri: str, method: str) -> None:
    """:raises AcmeProblem: caa, naming the record set that forbids issuance for ``name``
    (``*.`` for a wildcard) by this CA, this account or this validation method."""
    wildcard = name.startswith("*.")
    base = name.removeprefix("*.")
    owner, records = relevant(base, lookup)
    if not records:
        return
    for flags, tag, _value in records:
        if flags & CRITICAL and tag.lower() not in KNOWN_TAGS:
            raise AcmeProblem("caa", f"the CAA record set at {owner} has a critical property "
                                     f"{tag!r} this CA does not know")
    wanted = "issuewild" if wildcard and any(t.lower() == "issuewild" for _, t, _ in records) \
        else "issue"
    properties = [value for _, tag, value in records if tag.lower() == wanted]
    if not properties:
        return  # no issue(wild) properties: they restrict nothing
    ours = {i.lower().rstrip(".") for i in identities}
    for value in properties:
        parsed = _parse_issue(value)
        if parsed is None or parsed[0] not in ours:
            continue
        parameters = parsed[1]
        if "accounturi" in parameters and parameters["accounturi"] != account_uri:
            continue
        if "validationmethods" in parameters and \
                method not in parameters["validationmethods"].split(","):
            continue
        return
    raise AcmeProblem("caa", f"the CAA record set at {owner} does not let this CA "
                             f"({', '.join(sorted(ours))}) issue for {name} with this account "
                             f"and validation method {method}")
