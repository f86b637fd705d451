"""C2SP tlog-policy: the logs, the witnesses and the quorum a checkpoint needs.

https://c2sp.org/tlog-policy (Sigsum's policy format, with signed-note vkeys).
`parse_policy` reads a policy, `Policy.quorum_satisfied` decides whether the
witnesses whose cosignatures verified meet its quorum, and `stake_policy`
writes the policy "witnesses holding more than 2/3 of the stake".  Pure.

The spec's rules this follows where a looser reading was possible:

* Only whole lines are comments ("comment lines (lines starting with "#",
  possibly preceded by whitespace)"): ``quorum q # note`` is three arguments,
  an error.
* "Each defined name can be listed as a group member at most once" is read
  across the whole file, as its reason demands ("each witness can contribute
  to a group, or to the quorum in particular, in only one way").  So groups
  form a tree, and a witness cannot be listed twice to weigh more.
* Names are opaque octet strings ("names must be handled as opaque octet
  strings"): they are decoded as UTF-8 with ``surrogateescape``, a bijection,
  so two names are equal exactly when their octets are.
* CR is a control character the spec does not allow, so CRLF files are
  refused; a last line without its newline is accepted; k may have leading
  zeros ("it must be written in decimal").
* Witness keys must be cosignature keys (types 0x04, 0x06); log keys may be
  any checkpoint signature type (0x01, 0x02, 0x05, 0x06), per "Log and witness
  keys must use a signature type approprate respective function".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from types import MappingProxyType
from typing import TypeAlias

# Signature types of https://c2sp.org/signed-note#signature-types.
SIG_ED25519 = 0x01
SIG_ECDSA = 0x02
SIG_COSIGNATURE_ED25519 = 0x04  # https://c2sp.org/tlog-cosignature
SIG_RFC6962 = 0x05  # https://c2sp.org/static-ct-api
SIG_COSIGNATURE_MLDSA44 = 0x06  # https://c2sp.org/tlog-cosignature

WITNESS_KEY_TYPES = frozenset({SIG_COSIGNATURE_ED25519, SIG_COSIGNATURE_MLDSA44})
LOG_KEY_TYPES = frozenset({SIG_ED25519, SIG_ECDSA, SIG_RFC6962, SIG_COSIGNATURE_MLDSA44})
#: Key material sizes the specs fix (0x02 and 0x05 keys are DER and vary).
_KEY_SIZES = {SIG_ED25519: 32, SIG_COSIGNATURE_ED25519: 32, SIG_COSIGNATURE_MLDSA44: 1312}
#: Types whose key ID MUST be SHA-256(name || 0x0A || type || key)[:4]; 0x02 and
#: 0x05 derive theirs from a hash of the key instead.
_DERIVED_KEY_IDS = frozenset({SIG_ED25519, SIG_COSIGNATURE_ED25519, SIG_COSIGNATURE_MLDSA44})

#: The predefined name of the empty quorum ("quorum none").
NONE = "none"
#: Unequal stakes are decomposed by enumerating all 2**n coalitions.
MAX_WEIGHTED_WITNESSES = 12

_WHITESPACE = re.compile(rb"[ \t]+")  # "ASCII space and tab characters *only*"
_DECIMAL = re.compile(rb"[0-9]+")
# "the allowed octet values are 0x09 (tab), 0x0A (newline), 0x20-0x7E, and 0x80-0xFF"
_FORBIDDEN_OCTET = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")  # signed-note: fixed-length lowercase hex


class PolicyError(ValueError):
    """A policy (or vkey) that breaks tlog-policy; ``line`` is 1-based, or None."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.reason = reason
        self.line = line


@dataclass(frozen=True)
class VerifierKey:
    """A signed-note verifier key: ``<name>+<hex key ID>+<base64(type || key)>``."""

    name: str
    key_id: int
    sig_type: int
    public_key: bytes
    text: str


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def parse_vkey(text: str) -> VerifierKey:
    """Parse a vkey (https://c2sp.org/signed-note#verifier-keys).

    :raises PolicyError: if it is malformed, or its key ID is not the one its
        signature type requires.
    """
    # Names hold no '+', so the first two '+' split; base64 may hold more.
    name, sep1, rest = text.partition("+")
    hex_id, sep2, encoded = rest.partition("+")
    if not (sep1 and sep2):
        raise PolicyError("a vkey is <name>+<key ID>+<base64 key>")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise PolicyError("a vkey name must be UTF-8") from None
    # "Key names MUST be non-empty and MUST NOT contain any Unicode spaces";
    # notes hold no control characters, so neither can their key names.
    if not name or any(ch.isspace() or ch < " " or ch == "\x7f" for ch in name):
        raise PolicyError("a vkey name must be non-empty, without spaces or control characters")
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise PolicyError("a vkey key ID is 8 lowercase hex digits")
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise PolicyError("a vkey key is standard base64") from None
    if len(raw) < 2:
        raise PolicyError("a vkey key is a signature type byte and key material")
    sig_type, public_key = raw[0], raw[1:]
    size = _KEY_SIZES.get(sig_type)
    if size is not None and len(public_key) != size:
        raise PolicyError(f"a type 0x{sig_type:02x} key is {size} bytes, not {len(public_key)}")
    number = int(hex_id, 16)
    if sig_type in _DERIVED_KEY_IDS and number != key_id(name, sig_type, public_key):
        raise PolicyError(f"key ID {hex_id} is not the one derived from the name and key")
    return VerifierKey(name, number, sig_type, public_key, text)


@dataclass(frozen=True)
class Log:
    vkey: VerifierKey
    url: str | None


@dataclass(frozen=True)
class Witness:
    name: str
    vkey: VerifierKey
    url: str | None


@dataclass(frozen=True)
class Group:
    name: str
    threshold: int  # k: at least k of the members must have witnessed
    members: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Policy:
    logs: tuple[Log, ...]
    witnesses: Mapping[str, Witness]
    groups: Mapping[str, Group]  # in definition order: members come first
    quorum: str  # a witness, a group, or NONE

    def witnesses_for(self, key_name: str, key_id: int) -> tuple[Witness, ...]:
        """The witnesses a signature line ``— <key_name> <key_id>...`` may be from."""
        return tuple(w for w in self.witnesses.values()
                     if w.vkey.name == key_name and w.vkey.key_id == key_id)

    def quorum_satisfied(self, cosigned: Iterable[str]) -> bool:
        """Whether the witnesses named (policy names, whose cosignatures on the
        checkpoint verified) satisfy the quorum.

        :raises PolicyError: for a name that is not a witness of this policy
            (a key name or a group name passed by mistake).
        """
        have = set(cosigned)
        strangers = sorted(have - self.witnesses.keys())
        if strangers:
            raise PolicyError(f"not witnesses of this policy: {strangers!r}")
        if self.quorum == NONE:
            return True
        # Iterative, in definition order: deep nesting cannot overflow the stack.
        holds = {name: name in have for name in self.witnesses}
        for group in self.groups.values():
            holds[group.name] = sum(holds[m] for m in group.members) >= group.threshold
        return holds[self.quorum]


def parse_policy(text: str | bytes) -> Policy:
    """Parse a tlog-policy file.

    :raises PolicyError: on anything the spec does not allow, with its line.
    """
    if isinstance(text, str):
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise PolicyError("the policy text has unencodable characters") from None
    else:
        data = bytes(text)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline ending the last line
    parser = _Parser()
    for number, line in enumerate(lines, 1):
        bad = _FORBIDDEN_OCTET.search(line)
        if bad:
            raise PolicyError(f"control character 0x{bad[0][0]:02x} is not allowed", number)
        line = line.strip(b" \t")
        if not line or line.startswith(b"#"):
            continue
        words = [w.decode("utf-8", "surrogateescape") for w in _WHITESPACE.split(line)]
        try:
            parser.line(words[0], words[1:], number)
        except PolicyError as exc:
            raise PolicyError(exc.reason, number) from None
    if parser.quorum is None:
        raise PolicyError("a policy must include exactly one quorum line")
    return Policy(tuple(parser.logs), MappingProxyType(parser.witnesses),
                  MappingProxyType(parser.groups), parser.quorum)


class _Parser:
    def __init__(self) -> None:
        self.logs: list[Log] = []
        self.witnesses: dict[str, Witness] = {}
        self.groups: dict[str, Group] = {}
        self.quorum: str | None = None
        self.defined_at: dict[str, int] = {}
        self.member_at: dict[str, int] = {}  # name -> line of the group listing it
        self.log_keys: dict[bytes, int] = {}
        self.witness_keys: dict[bytes, int] = {}

    def line(self, keyword: str, args: list[str], number: int) -> None:
        if keyword == "log":
            self._log(args, number)
        elif keyword == "witness":
            self._witness(args, number)
        elif keyword == "group":
            self._group(args, number)
        elif keyword == "quorum":
            self._quorum(args)
        else:
            raise PolicyError(f"unknown keyword {keyword!r} (log, witness, group or quorum)")

    def _log(self, args: list[str], number: int) -> None:
        if not 1 <= len(args) <= 2:
            raise PolicyError("log takes a vkey and an optional URL")
        vkey = parse_vkey(args[0])
        if vkey.sig_type not in LOG_KEY_TYPES:
            raise PolicyError(f"signature type 0x{vkey.sig_type:02x} is not a log key type")
        # "Two vkeys are considered *duplicate* if they wrap the same underlying
        # public key, even if they differ by key name and key id."
        if vkey.public_key in self.log_keys:
            raise PolicyError(f"duplicate log: same public key as line {self.log_keys[vkey.public_key]}")
        self.log_keys[vkey.public_key] = number
        self.logs.append(Log(vkey, args[1] if len(args) == 2 else None))

    def _witness(self, args: list[str], number: int) -> None:
        if not 2 <= len(args) <= 3:
            raise PolicyError("witness takes a name, a vkey and an optional URL")
        name = args[0]
        self._define(name, number)
        vkey = parse_vkey(args[1])
        if vkey.sig_type not in WITNESS_KEY_TYPES:
            raise PolicyError(f"signature type 0x{vkey.sig_type:02x} is not a cosignature key "
                              "type (0x04 or 0x06)")
        if vkey.public_key in self.witness_keys:
            raise PolicyError("duplicate witness: same public key as line "
                              f"{self.witness_keys[vkey.public_key]}")
        self.witness_keys[vkey.public_key] = number
        self.witnesses[name] = Witness(name, vkey, args[2] if len(args) == 3 else None)

    def _group(self, args: list[str], number: int) -> None:
        if len(args) < 3:
            raise PolicyError("group takes a name, all|any|<k>, and at least one member")
        name, threshold, members = args[0], args[1], args[2:]
        self._define(name, number)
        n = len(members)
        if threshold == "all":
            k = n
        elif threshold == "any":
            k = 1
        else:
            raw = threshold.encode("utf-8", "surrogateescape")
            if not _DECIMAL.fullmatch(raw):
                raise PolicyError(f"threshold {threshold!r} is not all, any or a decimal number")
            digits = raw.lstrip(b"0")
            k = int(digits) if 0 < len(digits) <= 9 else (0 if not digits else n + 1)
            if not 1 <= k <= n:
                raise PolicyError(f"threshold {threshold} is not between 1 and {n} (the members)")
        for member in members:
            if member == NONE:
                raise PolicyError("'none' cannot be a group member")
            if member not in self.witnesses and member not in self.groups:
                raise PolicyError(f"member {member!r} is not defined on a preceding line")
            if member in self.member_at:
                raise PolicyError(f"{member!r} is already a group member (line "
                                  f"{self.member_at[member]}); a name may be listed only once")
            self.member_at[member] = number
        self.groups[name] = Group(name, k, tuple(members))

    def _quorum(self, args: list[str]) -> None:
        if len(args) != 1:
            raise PolicyError("quorum takes one name")
        if self.quorum is not None:
            raise PolicyError("a policy must include exactly one quorum line")
        name = args[0]
        if name != NONE and name not in self.witnesses and name not in self.groups:
            raise PolicyError(f"quorum {name!r} is not defined on a preceding line")
        self.quorum = name

    def _define(self, name: str, number: int) -> None:
        # "Witnesses and groups share a single namespace"; 'none' is predefined.
        if name == NONE:
            raise PolicyError("'none' is predefined")
        if name in self.defined_at:
            raise PolicyError(f"{name!r} is already defined on line {self.defined_at[name]}")
        self.defined_at[name] = number


# -- "More than 2/3 of the stake" ---------------------------------------------------------
#
# tlog-policy has no weights, and a name may be a group member only once, so a
# stake-weighted rule is expressible only if it is a "read-once" formula of
# k-of-n groups.  Equal stakes always are: one group, k = floor(2n/3) + 1.
# Unequal stakes are decomposed exactly into any-of, all-of and k-of-n groups
# (the unique read-once decomposition, when there is one), or refused.

_Node: TypeAlias = int | tuple[int, list["_Node"]]  # a witness index, or (k, members)


def stake_policy(witnesses: Sequence[tuple[str, str, int]], logs: Sequence[str] = (),
                 *, group_prefix: str = "stake") -> str:
    """Policy text whose quorum holds exactly when the cosigning witnesses
    hold more than 2/3 of the total stake.  ``witnesses`` are (name, vkey,
    stake); a witness with zero stake, or one that never tips the balance, is
    listed but is no group member.

    :raises PolicyError: for bad input, or unequal stakes that no tlog-policy
        can express (or more than MAX_WEIGHTED_WITNESSES of them).
    """
    names = [name for name, _, _ in witnesses]
    for name, _, stake in witnesses:
        if not name or re.search(r"[\s\x00-\x1f\x7f]", name) or name.startswith("#"):
            raise PolicyError(f"witness name {name!r} cannot be written on a policy line")
        if isinstance(stake, bool) or not isinstance(stake, int) or stake < 0:
            raise PolicyError(f"stake of {name!r} must be a non-negative integer")
    if len(set(names)) != len(names):
        raise PolicyError("witness names must be distinct")
    staked = [i for i, (_, _, stake) in enumerate(witnesses) if stake > 0]
    if not staked:
        raise PolicyError("no witness holds any stake")
    stakes = [witnesses[i][2] for i in staked]
    if len(set(stakes)) == 1:
        # c equal stakes beat 2/3 of n exactly when c > 2n/3.
        node: _Node = (2 * len(staked) // 3 + 1, list(range(len(staked))))
    else:
        if len(staked) > MAX_WEIGHTED_WITNESSES:
            raise PolicyError(f"unequal stakes over more than {MAX_WEIGHTED_WITNESSES} witnesses "
                              "are not decomposed; tlog-policy has no weights")
        found = _decompose_stakes(stakes)
        if found is None:
            raise PolicyError("these unequal stakes cannot be expressed: tlog-policy has no "
                              "weights and lists each name in at most one group; equal stakes can")
        node = found
    lines = ["# Quorum: cosigning witnesses hold more than 2/3 of the total stake.",
             *(f"log {vkey}" for vkey in logs)]
    for name, vkey, stake in witnesses:
        lines += [f"# {name}: stake {stake}", f"witness {name} {vkey}"]
    groups: list[str] = []

    def emit(n: _Node) -> str:
        if isinstance(n, int):
            return names[staked[n]]
        members = [emit(child) for child in n[1]]
        if len(members) == 1:
            return members[0]  # a one-member group is its member
        group = f"{group_prefix}-{len(groups) + 1}"
        if group in names:
            raise PolicyError(f"group name {group!r} is a witness name; pick another group_prefix")
        k = "all" if n[0] == len(members) else "any" if n[0] == 1 else str(n[0])
        groups.append(f"group {group} {k} {' '.join(members)}")
        return group

    quorum = emit(node)
    text = "\n".join([*lines, *groups, f"quorum {quorum}"]) + "\n"
    parse_policy(text)  # the vkeys, duplicates and names, checked as any reader will
    return text


def _decompose_stakes(stakes: list[int]) -> _Node | None:
    """A read-once k-of-n formula equal to "stake > 2/3 of the total", or None."""
    n, total = len(stakes), sum(stakes)
    weight = [0] * (1 << n)
    for mask in range(1, 1 << n):
        low = mask & -mask
        weight[mask] = weight[mask ^ low] + stakes[low.bit_length() - 1]
    wins = [3 * w > 2 * total for w in weight]
    minimal = [m for m in range(1 << n) if wins[m] and not any(
        wins[m ^ b] for b in _bits(m))]
    relevant = 0
    for m in minimal:
        relevant |= m  # a witness in no minimal winning set never tips the balance
    node = _decompose(relevant, minimal, n)
    # Belt and braces: the formula must agree with the stake rule everywhere.
    if node is None or any(_evaluate(node, mask) != wins[mask] for mask in range(1 << n)):
        return None
    return node


def _decompose(variables: int, minimal: list[int], n: int) -> _Node | None:
    """Decompose the monotone function with these minimal true sets."""
    if variables & (variables - 1) == 0:
        return variables.bit_length() - 1 if minimal == [variables] else None
    parts = _components(variables, minimal)
    if len(parts) > 1:  # no minimal set spans two parts: any-of the parts
        found = [_decompose(p, [m for m in minimal if m & p == m], n) for p in parts]
        children: list[_Node] = [c for c in found if c is not None]
        return (1, children) if len(children) == len(parts) else None
    dual = _minimal_transversals(variables, minimal, n)
    parts = _components(variables, dual)
    if len(parts) > 1:  # the dual is any-of the parts, so this is all-of them
        children = []
        for p in parts:
            restricted = {m & p for m in minimal}
            child = _decompose(p, sorted(r for r in restricted
                                         if not any(o != r and o & r == o for o in restricted)), n)
            if child is None:
                return None
            children.append(child)
        return (len(children), children)
    # A k-of-m gate with 1 < k < m: its members are the maximal proper modules,
    # sets M through which f sees only one function of M.
    modules = [m for m in _submasks(variables)
               if m.bit_count() == 1 or (1 < m.bit_count() < variables.bit_count()
                                         and _is_module(m, minimal))]
    blocks = [m for m in modules if not any(o != m and o & m == m for o in modules)]
    if len(blocks) < 3 or any(a & b for a, b in combinations(blocks, 2)):
        return None  # overlapping blocks: not a read-once formula
    thresholds = {sum(1 for b in blocks if b & m) for m in minimal}
    if len(thresholds) != 1:
        return None
    children = []
    for b in blocks:
        child = _decompose(b, sorted({m & b for m in minimal if m & b}), n)
        if child is None:
            return None
        children.append(child)
    return (thresholds.pop(), children)


def _is_module(part: int, minimal: list[int]) -> bool:
    """Whether f depends on ``part`` only through one function of it: then the
    minimal sets meeting it are every inner part joined with every outer part."""
    meeting = [m for m in minimal if m & part]
    inner = {m & part for m in meeting}
    outer = {m & ~part for m in meeting}
    return len(meeting) == len(inner) * len(outer)


def _components(variables: int, sets: list[int]) -> list[int]:
    """The connected parts of ``variables`` when each set joins its members."""
    parts = _bits(variables)
    for s in sets:  # merging only grows parts, so one pass suffices
        touching = [p for p in parts if p & s]
        parts = [p for p in parts if not p & s] + [sum(touching)]
    return sorted(parts)


def _minimal_transversals(variables: int, minimal: list[int], n: int) -> list[int]:
    """The minimal sets meeting every minimal true set (the dual's minimal true sets)."""
    true = bytearray(1 << n)
    for m in minimal:
        true[m] = 1
    subsets = _submasks(variables)
    for t in subsets:  # ascending: every subset of t is settled before t
        if not true[t] and any(true[t ^ b] for b in _bits(t)):
            true[t] = 1

    def meets_all(s: int) -> bool:
        return not true[variables & ~s]

    return [s for s in subsets if meets_all(s) and not any(meets_all(s ^ b) for b in _bits(s))]


def _evaluate(node: _Node, mask: int) -> bool:
    if isinstance(node, int):
        return bool(mask >> node & 1)
    return sum(_evaluate(child, mask) for child in node[1]) >= node[0]


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low)
        mask ^= low
    return out


def _submasks(mask: int) -> list[int]:
    return sorted({sum(c) for r in range(mask.bit_count() + 1) for c in combinations(_bits(mask), r)})
