"""C2SP tlog-policy (https://c2sp.org/tlog-policy): parsing, quorums, stake policies."""

from __future__ import annotations

import base64
import hashlib
from itertools import combinations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ct import policy
from trustchain.ct.policy import PolicyError, parse_policy, parse_vkey, stake_policy

SPEC = "https://c2sp.org/tlog-policy"


def ed25519_key(seed: int) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key().public_bytes_raw()


def vkey(name: str, sig_type: int = 0x04, seed: int | None = None) -> str:
    """A vkey with its derived key ID (signed-note: SHA-256(name || 0x0A || type || key)[:4])."""
    key = ed25519_key(seed if seed is not None else hashlib.sha256(name.encode()).digest()[0])
    key_id = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + key).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(bytes([sig_type]) + key).decode()}"


def fill(template: str) -> str:
    """Replace each ``<vkey>`` of a spec example with a distinct real vkey:
    the first (the log's) of type 0x01, the witnesses' of type 0x04."""
    parts = template.split("<vkey>")
    out = parts[0]
    for i, part in enumerate(parts[1:]):
        out += vkey(f"example.com/key{i}", 0x01 if i == 0 else 0x04, seed=i + 1) + part
    return out


# The example policy of the spec, verbatim (SPEC, "Example policy").
SPEC_EXAMPLE = """\
log <vkey>

witness X1 <vkey>
witness X2 <vkey>
witness X3 <vkey>
group X-witnesses 2 X1 X2 X3

witness Y1 <vkey>
witness Y2 <vkey>
witness Y3 <vkey>
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def test_the_spec_example_policy() -> None:
    """SPEC: "it is required that there are valid cosignatures from at least two
    of the `X-witnesses`, and from at least one of the `Y-witnesses`"."""
    p = parse_policy(fill(SPEC_EXAMPLE))
    assert len(p.logs) == 1 and p.logs[0].vkey.sig_type == 0x01 and p.logs[0].url is None
    assert list(p.witnesses) == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert p.groups["X-witnesses"].threshold == 2 and p.groups["Y-witnesses"].threshold == 1
    assert p.groups["X-and-Y"].threshold == 2 and p.quorum == "X-and-Y"
    assert p.quorum_satisfied({"X1", "X3", "Y2"})
    assert not p.quorum_satisfied({"X1", "Y1", "Y2", "Y3"})
    assert not p.quorum_satisfied({"X1", "X2", "X3"})
    assert not p.quorum_satisfied(set())


def test_the_spec_quorum_forms() -> None:
    """SPEC, "Defining the quorum": a witness, ``quorum none``, or a group."""
    w = vkey("w.example/1")
    assert parse_policy(f"witness W {w}\nquorum W\n").quorum_satisfied({"W"})
    assert not parse_policy(f"witness W {w}\nquorum W\n").quorum_satisfied(set())
    none = parse_policy("quorum none\n")  # "the set of witnesses may be empty"
    assert none.quorum_satisfied(set()) and none.logs == () and not none.witnesses
    for threshold, wins in (("all", [False, False, True]), ("any", [True, True, True]),
                            ("2", [False, True, True])):
        p = parse_policy(f"witness a {vkey('a.example')}\nwitness b {vkey('b.example')}\n"
                         f"witness c {vkey('c.example')}\ngroup g {threshold} a b c\nquorum g\n")
        assert [p.quorum_satisfied(s) for s in ({"a"}, {"a", "b"}, {"a", "b", "c"})] == wins


def test_urls_whitespace_and_comments() -> None:
    """SPEC, "Structure": space and tab separate items, leading and trailing
    whitespace is allowed, comment lines may be indented."""
    text = (f"  # the log\n\tlog {vkey('log.example', 0x01)}  https://log.example/\n\n"
            f"witness\tW {vkey('w.example')}\thttps://w.example/ \n   \t\n  quorum   W\t")
    p = parse_policy(text)  # and no newline after the last line
    assert p.logs[0].url == "https://log.example/" and p.witnesses["W"].url == "https://w.example/"
    assert p.quorum == "W"


def test_names_are_opaque_octets() -> None:
    """SPEC: "the name 0x4B (ASCII "K") is different from the name 0xE2 0x84 0xAA"."""
    text = (f"witness K {vkey('k.example')}\nwitness \u212a {vkey('kelvin.example')}\n"
            "group both all K \u212a\nquorum both\n")
    p = parse_policy(text.encode())
    assert set(p.witnesses) == {"K", "\u212a"}
    assert not p.quorum_satisfied({"K"}) and p.quorum_satisfied({"K", "\u212a"})
    raw = parse_policy(b"witness \xff " + vkey("ff.example").encode() + b"\nquorum \xff\n")
    assert raw.quorum_satisfied(raw.witnesses)  # invalid UTF-8 is a name like any other


def test_published_vkeys_parse() -> None:
    # https://github.com/golang/mod/blob/master/sumdb/note/note_test.go
    peter = parse_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    assert (peter.name, peter.key_id, peter.sig_type, len(peter.public_key)) == (
        "PeterNeumann", 0xC74F20A3, 0x01, 32)
    # https://github.com/transparency-dev/formats/blob/main/note/note_cosigv1_test.go: a '+' in base64
    plus = parse_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert plus.name == "TEST" and plus.public_key[:3] == bytes.fromhex("0702f8")
    remora = parse_vkey("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    assert remora.sig_type == 0x04
    # https://c2sp.org/signed-note#example
    foo = parse_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
    assert foo.public_key.hex() == "e932791ae6e7a840a46164c904786426d5e7821dd8b29a00d61cae72afdd4da4"


@pytest.mark.parametrize("bad", [
    "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # uppercase key ID
    "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # 7 hex digits
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # another key ID
    "PeterNeuman+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # another name
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
    # golang/mod note_test.go: "wrong length key, with adjusted key hash"
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+c74f20a3", "+c74f20a3+ARpc", "Peter Neumann+c74f20a3+ARpc", "n+00000000+AQ==",
])
def test_malformed_vkeys_are_refused(bad: str) -> None:
    with pytest.raises(PolicyError):
        parse_vkey(bad)


def ed25519_seed_of(vkey_text: str) -> int:
    """The seed ``vkey`` chose for a name, so a second vkey can wrap the same key."""
    name = vkey_text.split("+")[0]
    return hashlib.sha256(name.encode()).digest()[0]


W = vkey("w.example/w")
V = vkey("v.example/v")
LOG = vkey("log.example", 0x01)


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("", None, "exactly one quorum"),
    ("# only a comment\n", None, "exactly one quorum"),
    (f"witness W {W}\nquorum W\nquorum W\n", 3, "exactly one quorum"),
    ("quorum W\n", 1, "not defined"),
    (f"group g any W\nwitness W {W}\nquorum g\n", 1, "not defined on a preceding line"),
    ("frobnicate x\nquorum none\n", 1, "unknown keyword"),
    ("Quorum none\n", 1, "unknown keyword"),  # keywords are case-sensitive
    ("quorum none # comment\n", 1, "quorum takes one name"),  # only whole lines are comments
    ("quorum\n", 1, "quorum takes one name"),
    ("log\nquorum none\n", 1, "log takes"),
    (f"log {LOG} https://a https://b\nquorum none\n", 1, "log takes"),
    ("witness W\nquorum none\n", 1, "witness takes"),
    (f"witness W {W} https://a extra\nquorum none\n", 1, "witness takes"),
    (f"witness W {W}\ngroup g any\nquorum g\n", 2, "at least one member"),
    (f"witness W {W}\ngroup g 0 W\nquorum g\n", 2, "between 1 and 1"),
    (f"witness W {W}\ngroup g 2 W\nquorum g\n", 2, "between 1 and 1"),
    (f"witness W {W}\ngroup g -1 W\nquorum g\n", 2, "not all, any or a decimal"),
    (f"witness W {W}\ngroup g +1 W\nquorum g\n", 2, "not all, any or a decimal"),
    (f"witness W {W}\ngroup g ALL W\nquorum g\n", 2, "not all, any or a decimal"),
    (f"witness W {W}\ngroup g \u0661 W\nquorum g\n", 2, "not all, any or a decimal"),  # Arabic 1
    (f"witness W {W}\ngroup g {'9' * 5000} W\nquorum g\n", 2, "between 1 and 1"),
    (f"witness W {W}\ngroup g any W W\nquorum g\n", 2, "only once"),
    (f"witness W {W}\nwitness V {V}\ngroup g any W\ngroup h any W V\nquorum h\n", 4, "only once"),
    (f"witness W {W}\ngroup g any W none\nquorum g\n", 2, "'none' cannot be a group member"),
    (f"witness none {W}\nquorum none\n", 1, "predefined"),
    (f"witness W {W}\ngroup W any W\nquorum W\n", 2, "already defined on line 1"),
    (f"witness W {W}\nwitness W {V}\nquorum W\n", 2, "already defined"),
    (f"witness W {W}\nwitness V {W.replace('w.example/w', 'x', 1)}\nquorum W\n", 2, "derived"),
    (f"witness W {W}\nwitness V {vkey('other.example/v', seed=ed25519_seed_of(W))}\nquorum W\n",
     2, "duplicate witness"),
    (f"log {LOG}\nlog {vkey('other.example', 0x01, seed=ed25519_seed_of(LOG))}\nquorum none\n",
     2, "duplicate log"),
    (f"witness W {vkey('w.example', 0x01)}\nquorum W\n", 1, "not a cosignature key type"),
    (f"log {vkey('log.example', 0x04)}\nquorum none\n", 1, "not a log key type"),
    (f"witness W {W}\r\nquorum W\r\n", 1, "control character 0x0d"),  # CRLF: only tab and newline
    ("# a \x00 in a comment\nquorum none\n", 1, "control character 0x00"),
    ("quorum none\n\x7f\n", 2, "control character 0x7f"),
])
def test_policy_errors_name_the_rule_and_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.line == line and fragment in caught.value.reason, str(caught.value)


def test_leading_zeros_are_decimal() -> None:
    """SPEC: "If k is given numerically, it must be written in decimal"."""
    p = parse_policy(f"witness W {W}\nwitness V {V}\ngroup g 002 W V\nquorum g\n")
    assert p.groups["g"].threshold == 2


def test_names_may_collide_with_keywords_but_are_positional() -> None:
    p = parse_policy(f"witness any {W}\nwitness all {V}\ngroup group any any all\nquorum group\n")
    assert p.groups["group"].members == ("any", "all") and p.quorum_satisfied({"all"})


def test_quorum_satisfied_refuses_names_that_are_not_witnesses() -> None:
    p = parse_policy(fill(SPEC_EXAMPLE))
    with pytest.raises(PolicyError, match="not witnesses"):
        p.quorum_satisfied({"X-witnesses", "Y1"})  # a group name does not cosign
    with pytest.raises(PolicyError, match="not witnesses"):
        p.quorum_satisfied({"example.com/key1"})  # a key name is not a policy name


def test_witnesses_for_a_signature_line() -> None:
    p = parse_policy(fill(SPEC_EXAMPLE))
    x1 = p.witnesses["X1"].vkey
    assert [w.name for w in p.witnesses_for(x1.name, x1.key_id)] == ["X1"]
    assert p.witnesses_for(x1.name, x1.key_id ^ 1) == ()


def test_deep_nesting_evaluates_without_recursion() -> None:
    depth = 5000
    lines = [f"witness W {W}", "group g0 all W"]
    lines += [f"group g{i} any g{i - 1}" for i in range(1, depth)]
    p = parse_policy("\n".join([*lines, f"quorum g{depth - 1}"]))
    assert p.quorum_satisfied({"W"}) and not p.quorum_satisfied(set())


# -- Fuzzing: nothing but PolicyError escapes the parser -------------------------------------

TOKENS = ["log", "witness", "group", "quorum", "none", "all", "any", "0", "1", "2", "3", "01",
          "a", "b", "g", "h", "#", "https://x", W, V, LOG, "\t", " ", "\u212a", "\r"]
FUZZ_KEYS = [vkey(f"fuzz{i}.example", seed=100 + i) for i in range(6)]
#: Lines that are mostly well formed, for mutating policies.
LINES = st.one_of(
    st.builds("witness {} {}".format, st.sampled_from(["w0", "g0", "none", "x"]),
              st.sampled_from([*FUZZ_KEYS, LOG])),
    st.builds(lambda name, k, members: f"group {name} {k} {' '.join(members)}",
              st.sampled_from(["g0", "g9", "w1"]), st.sampled_from(["all", "any", "1", "2", "0"]),
              st.lists(st.sampled_from(["w0", "w1", "g0", "none", "x"]), max_size=4)),
    st.builds("quorum {}".format, st.sampled_from(["w0", "g0", "none", "x"])),
    st.just(f"log {LOG}"), st.just("  # comment"), st.just(""),
    st.lists(st.sampled_from(TOKENS), max_size=5).map(" ".join),
)


@st.composite
def near_policies(draw: st.DrawFn) -> str:
    """A valid policy of witnesses and nested groups, then maybe a line changed."""
    witnesses = [f"w{i}" for i in range(draw(st.integers(1, 5)))]
    lines = [f"witness {w} {FUZZ_KEYS[i]}" for i, w in enumerate(witnesses)]
    defined, used = list(witnesses), set()
    for j in range(draw(st.integers(0, 4))):
        free = [name for name in defined if name not in used]
        if not free:
            break
        members = draw(st.lists(st.sampled_from(free), min_size=1, max_size=len(free), unique=True))
        k = draw(st.sampled_from(["all", "any", *map(str, range(1, len(members) + 1))]))
        lines.append(f"group g{j} {k} {' '.join(members)}")
        used.update(members)
        defined.append(f"g{j}")
    lines.append(f"quorum {draw(st.sampled_from([*defined, 'none']))}")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(lines)))
        lines[at:at + draw(st.integers(0, 1))] = [draw(LINES)]
    return "\n".join(lines)


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_raise_only_policy_error(data: bytes) -> None:
    try:
        parse_policy(data)
    except PolicyError:
        pass


@given(st.text(max_size=400))
@settings(max_examples=400, deadline=None)
def test_arbitrary_text_raises_only_policy_error(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError:
        pass


@given(near_policies(), st.sets(st.sampled_from(["w0", "w1", "w2", "w3", "w4", "g0"])))
@settings(max_examples=400, deadline=None)
def test_near_policies_parse_and_evaluate_by_definition(text: str, cosigned: set[str]) -> None:
    try:
        p = parse_policy(text)
    except PolicyError:
        return
    try:
        verdict = p.quorum_satisfied(cosigned)
    except PolicyError:
        assert not cosigned <= p.witnesses.keys()
        return
    assert verdict == _brute_force(p, cosigned)


def _brute_force(p: policy.Policy, cosigned: set[str]) -> bool:
    """The quorum rule by its definition, recursively: "at least k of its n members"."""
    def holds(name: str) -> bool:
        if name in p.witnesses:
            return name in cosigned
        group = p.groups[name]
        return sum(holds(m) for m in group.members) >= group.threshold
    return p.quorum == policy.NONE or holds(p.quorum)


# -- More than 2/3 of the stake --------------------------------------------------------------


def staked(stakes: list[int]) -> list[tuple[str, str, int]]:
    return [(f"v{i}", vkey(f"validator{i}.example", seed=i + 1), s) for i, s in enumerate(stakes)]


def assert_exact(stakes: list[int]) -> policy.Policy:
    """Every coalition satisfies the policy exactly when it holds > 2/3 of the stake."""
    p = parse_policy(stake_policy(staked(stakes)))
    total = sum(stakes)
    for r in range(len(stakes) + 1):
        for coalition in combinations(range(len(stakes)), r):
            wins = 3 * sum(stakes[i] for i in coalition) > 2 * total
            assert p.quorum_satisfied({f"v{i}" for i in coalition}) == wins, (stakes, coalition)
    return p


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10])
def test_equal_stakes_are_one_k_of_n_group(n: int) -> None:
    p = assert_exact([7] * n)
    if n > 1:
        (group,) = p.groups.values()
        assert group.threshold == 2 * n // 3 + 1 and len(group.members) == n


def test_equal_stakes_scale_past_the_weighted_cap() -> None:
    n = 100
    p = parse_policy(stake_policy(staked([1] * n)))
    assert p.quorum_satisfied({f"v{i}" for i in range(67)})
    assert not p.quorum_satisfied({f"v{i}" for i in range(66)})


@pytest.mark.parametrize("stakes", [[2, 1, 1], [4, 1, 1, 1, 1], [5, 5, 5, 1, 1, 1],
                                    [3, 2, 2, 1, 1], [100, 1], [3, 3, 0]])
def test_expressible_unequal_stakes_are_exact(stakes: list[int]) -> None:
    assert_exact(stakes)


def test_unequal_stakes_that_need_weights_are_refused() -> None:
    # v0, v1 (2 each) and three 1s: 7 in all, 5 wins.  {v0, v1, any 1} and
    # {either 2, all three 1s} win: v0 and v1 would have to be listed twice.
    with pytest.raises(PolicyError, match="cannot be expressed"):
        stake_policy(staked([2, 2, 1, 1, 1]))
    with pytest.raises(PolicyError, match="more than 12"):
        stake_policy(staked([2] + [1] * 12))


@pytest.mark.parametrize(("witnesses", "fragment"), [
    ([("v 0", V, 1)], "cannot be written"),
    ([("#v", V, 1)], "cannot be written"),
    ([("v", V, -1)], "non-negative integer"),
    ([("v", V, 0)], "no witness holds any stake"),
    ([("v", V, 1), ("v", W, 1)], "distinct"),
    ([("v", V, 1), ("w", V.replace("v.example/v", "v.example/x"), 1)], "derived"),
    ([("stake-1", V, 1), ("w", W, 1)], "pick another group_prefix"),
])
def test_stake_policy_refuses_bad_input(witnesses: list[tuple[str, str, int]], fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        stake_policy(witnesses)


def test_stake_policy_lists_logs_and_every_witness() -> None:
    text = stake_policy(staked([100, 1]), logs=[LOG])
    p = parse_policy(text)
    assert [log.vkey.text for log in p.logs] == [LOG]
    assert set(p.witnesses) == {"v0", "v1"} and p.quorum == "v0"  # v1 never tips the balance


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=7))
@settings(max_examples=150, deadline=None)
def test_stake_policy_is_exact_or_refused(stakes: list[int]) -> None:
    if not any(stakes):
        return
    try:
        assert_exact(stakes)
    except PolicyError as exc:
        assert "cannot be expressed" in exc.reason
