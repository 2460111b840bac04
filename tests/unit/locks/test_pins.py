"""PIN generation: every PIN a lock would accept, none a guesser tries first, none shadowing
another code on the same lock. The checks below are written out here, independently of
locks.pins, so that a bug in the module's own checks cannot hide a bad PIN."""

from __future__ import annotations

import itertools
from collections.abc import Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locks.pins import (
    PinSpaceExhausted,
    UnknownPinRules,
    collides,
    common_constraints,
    generate_pin,
    is_weak,
    pin_for_locks,
    violations,
    weaknesses,
)
from locks.port import CodeConstraints, LockError

SEAM_LIKE = CodeConstraints(lengths=(4, 5, 6, 7, 8), no_zeros=True, cannot_start_with_12=True)
NUKI = CodeConstraints(lengths=(6,), no_zeros=True, cannot_start_with_12=True)
NO_0_NO_9 = CodeConstraints(lengths=(4, 6), missing_digits=frozenset({"0", "9"}))
FOUR_UNIQUE = CodeConstraints(lengths=(4,), min_unique_digits=4, no_triple_consecutive=True)
SIX_ONLY_DIGITS_1_TO_5 = CodeConstraints(
    lengths=(6,), missing_digits=frozenset("06789"), min_unique_digits=3
)

BRIEF_COMMON = (  # noqa: SIM905 - the brief's list, as written there
    "1111 1234 0000 1212 7777 1004 2000 4444 2222 6969 9999 3333 5555 6666 1122 1313 8888 4321 "
    "2001 1010 123456 654321 111111 000000 112233 121212 696969 159753 147258 789456"
).split()


def breaks_lock_rules(pin: str, c: CodeConstraints) -> list[str]:
    """What the test checks by itself, rule by rule."""
    broken = []
    if not pin.isdigit():
        broken.append("digits")
    if len(pin) not in c.lengths:
        broken.append("length")
    if c.no_zeros and "0" in pin:
        broken.append("zero")
    if set(pin) & c.missing_digits:
        broken.append("missing key")
    if c.cannot_start_with_12 and pin[:2] == "12":
        broken.append("starts with 12")
    if c.no_triple_consecutive and any(
        int(b) - int(a) == int(c_) - int(b) and abs(int(b) - int(a)) <= 1
        for a, b, c_ in zip(pin, pin[1:], pin[2:], strict=False)
    ):
        broken.append("triple")  # three in a row the same or consecutive
    if len(set(pin)) < c.min_unique_digits:
        broken.append("unique")
    return broken


def looks_weak(pin: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    repeated = any(
        len(pin) % k == 0 and pin == pin[:k] * (len(pin) // k) for k in range(1, len(pin))
    )
    return (
        repeated
        or steps in ({1}, {9})
        or pin == pin[::-1]
        or pin in BRIEF_COMMON
        or (len(pin) == 4 and pin[:2] in ("19", "20"))
    )


def shadows(pin: str, taken: Collection[str]) -> bool:
    return any(pin.startswith(t) or t.startswith(pin) for t in taken)


@pytest.mark.parametrize(
    "constraints", [SEAM_LIKE, NUKI, NO_0_NO_9, FOUR_UNIQUE, SIX_ONLY_DIGITS_1_TO_5]
)
def test_thousands_of_pins_meet_the_constraints_and_are_not_weak(
    constraints: CodeConstraints,
) -> None:
    pins = [generate_pin(constraints) for _ in range(2000)]
    for pin in pins:
        assert breaks_lock_rules(pin, constraints) == [], pin
        assert not looks_weak(pin), pin
        assert violations(pin, constraints) == []
        assert not is_weak(pin)
    # Random, not one PIN handed out again and again.
    assert len(set(pins)) > 1000


def test_prefers_six_digits_else_the_longest_allowed() -> None:
    assert len(generate_pin(CodeConstraints(lengths=(4, 5, 6, 8)))) == 6
    assert len(generate_pin(CodeConstraints(lengths=(4, 5)))) == 5
    assert len(generate_pin(CodeConstraints(lengths=(4, 5, 6)), length=4)) == 4


def test_nuki_keypad_pins_are_six_digits_one_to_nine_never_starting_12() -> None:
    for _ in range(1000):
        pin = generate_pin(NUKI)
        assert len(pin) == 6
        assert set(pin) <= set("123456789")
        assert not pin.startswith("12")


def test_brief_common_pins_and_patterns_are_weak() -> None:
    for pin in [
        *BRIEF_COMMON,
        "9876",
        "012345",
        "7890",
        "1221",
        "123321",
        "123123",
        "1987",
        "2024",
    ]:
        assert is_weak(pin), pin
        assert weaknesses(pin)
    for pin in ("4739", "815263", "38175"):
        assert not is_weak(pin), pin


def test_triple_consecutive_does_not_wrap_around_nine_to_zero() -> None:
    rule = CodeConstraints(lengths=(6,), no_triple_consecutive=True)
    assert violations("589041", rule) == []
    assert violations("581234", rule)
    assert violations("598741", rule)


def test_triple_rule_refuses_three_of_the_same_digit_in_a_row() -> None:
    """Seam's no_triple_consecutive_ints: no three digits in a row consecutive or the same."""
    rule = CodeConstraints(lengths=(6,), no_triple_consecutive=True)
    assert violations("475558", rule)
    assert violations("999481", rule)
    assert violations("475598", rule) == []  # two the same is allowed
    assert violations("479758", rule) == []  # 9, 7, 5 is not consecutive


def test_thousands_of_generated_pins_have_no_three_same_digits_in_a_row() -> None:
    rule = CodeConstraints(lengths=(6,), no_triple_consecutive=True)
    for _ in range(3000):
        pin = generate_pin(rule)
        assert not any(a == b == c for a, b, c in zip(pin, pin[1:], pin[2:], strict=False))


def test_unique_first_four_digits_compares_with_the_other_codes_on_the_lock() -> None:
    rule = CodeConstraints(lengths=(6,), unique_first_four_digits=True)
    assert violations("473958", rule) == []  # never against itself
    assert collides("473912", ["473958"], unique_first_four=True)
    assert not collides("473912", ["473958"])
    taken = [p + "58" for p in _all(4) if not p.startswith("8")]
    for _ in range(40):
        assert generate_pin(rule, taken=taken).startswith("8")


def test_unknown_rule_or_lock_chosen_pin_is_never_guessed() -> None:
    with pytest.raises(UnknownPinRules, match="digits_must_rhyme"):
        generate_pin(CodeConstraints(lengths=(6,), unknown_rules=("digits_must_rhyme",)))
    with pytest.raises(UnknownPinRules):
        generate_pin(CodeConstraints(lengths=(6,), lock_chooses_pin=True))


def test_violations_name_each_broken_rule_without_quoting_the_pin() -> None:
    reasons = violations("1209", NUKI)
    assert len(reasons) == 3  # length, zero, starts with 12
    assert not any("1209" in reason for reason in reasons)
    assert violations("12a4", NUKI) == ["must contain only the digits 0–9"]
    assert violations("4739", NO_0_NO_9) == ["uses keys the keypad lacks: 9"]


def test_never_equal_to_a_taken_pin() -> None:
    rule = CodeConstraints(lengths=(4,))
    acceptable = [p for p in _all(4) if not breaks_lock_rules(p, rule) and not is_weak(p)]
    free = set(acceptable[::500])
    taken = [p for p in acceptable if p not in free]
    for _ in range(40):
        assert generate_pin(rule, taken=taken) in free


def test_a_taken_longer_pin_blocks_its_prefix() -> None:
    rule = CodeConstraints(lengths=(4,))
    acceptable = [p for p in _all(4) if not is_weak(p)]
    free = set(acceptable[::700])
    # Six-digit codes on the same lock whose first four digits cover every other PIN.
    taken = [p + "58" for p in acceptable if p not in free]
    for _ in range(40):
        pin = generate_pin(rule, taken=taken)
        assert pin in free
        assert not shadows(pin, taken)


def test_a_taken_shorter_pin_blocks_every_longer_pin_it_starts() -> None:
    taken = [p for p in _all(4) if not p.startswith("8")]
    for _ in range(40):
        pin = generate_pin(CodeConstraints(lengths=(6,)), taken=taken)
        assert pin.startswith("8")
        assert not shadows(pin, taken)


def test_collides_counts_equality_and_prefixes_both_ways() -> None:
    assert collides("4739", ["4739"])
    assert collides("4739", ["473958"])
    assert collides("473958", ["4739"])
    assert not collides("473958", ["4738", "739581"])


def test_exhausted_space_raises_without_naming_any_pin() -> None:
    rule = CodeConstraints(lengths=(4,))
    weak_left = {"1111", "1234", "0000", "1212", "2580", "1987"}
    taken = [p for p in _all(4) if p not in weak_left]
    with pytest.raises(PinSpaceExhausted) as caught:
        generate_pin(rule, taken=taken)
    assert isinstance(caught.value, LockError)
    assert not any(pin in str(caught.value) for pin in weak_left)


def test_falls_back_to_another_allowed_length_when_one_is_full() -> None:
    taken = [p for p in _all(4) if not is_weak(p)]
    assert len(generate_pin(CodeConstraints(lengths=(4, 5)), taken=taken)) == 5


@pytest.mark.parametrize(
    ("constraints", "length"),
    [
        (CodeConstraints(lengths=()), None),
        (CodeConstraints(missing_digits=frozenset("123456789"), no_zeros=True), None),
        (CodeConstraints(missing_digits=frozenset("123456789")), None),  # only 0: all weak
        (CodeConstraints(lengths=(4,), min_unique_digits=5), None),
        (CodeConstraints(missing_digits=frozenset("0123"), min_unique_digits=7), None),
        (CodeConstraints(lengths=(4, 6)), 5),
    ],
)
def test_contradictory_constraints_raise_value_error(
    constraints: CodeConstraints, length: int | None
) -> None:
    with pytest.raises(ValueError):
        generate_pin(constraints, length=length)


def test_common_constraints_intersect_lengths_and_join_restrictions() -> None:
    gate = CodeConstraints(lengths=(4, 5, 6), missing_digits=frozenset({"9"}), min_unique_digits=3)
    common = common_constraints([gate, NUKI])
    assert common == CodeConstraints(
        lengths=(6,),
        no_zeros=True,
        cannot_start_with_12=True,
        missing_digits=frozenset({"9"}),
        min_unique_digits=3,
    )
    assert common_constraints([CodeConstraints(lengths=(4,)), NUKI]) is None


def test_one_pin_on_every_lock_when_the_constraints_allow() -> None:
    gate = CodeConstraints(lengths=(4, 5, 6), missing_digits=frozenset({"9"}))
    gate_taken = {"473815", "5826"}
    for _ in range(300):
        pins = pin_for_locks({"bay-1": (NUKI, {"381547"}), "gate": (gate, gate_taken)})
        assert pins["bay-1"] == pins["gate"]
        pin = pins["gate"]
        assert breaks_lock_rules(pin, NUKI) == breaks_lock_rules(pin, gate) == []
        assert not shadows(pin, gate_taken | {"381547"})


def test_a_pin_per_lock_when_lengths_do_not_intersect() -> None:
    four = CodeConstraints(lengths=(4,))
    pins = pin_for_locks({"bay-1": (NUKI, ()), "gate": (four, {"4739"})})
    assert len(pins["bay-1"]) == 6
    assert len(pins["gate"]) == 4
    assert breaks_lock_rules(pins["bay-1"], NUKI) == []
    assert pins["gate"] != "4739"


def test_a_pin_per_lock_when_no_shared_pin_is_free() -> None:
    four = CodeConstraints(lengths=(4,))
    # Between them the two locks hold every 4-digit PIN; each alone leaves some free.
    everything = [p for p in _all(4) if not is_weak(p)]
    first, second = everything[: len(everything) // 2], everything[len(everything) // 2 :]
    pins = pin_for_locks({"a": (four, first), "b": (four, second)})
    assert pins["a"] in second
    assert pins["b"] in first


def test_one_lock_out_of_pins_names_the_lock() -> None:
    four = CodeConstraints(lengths=(4,))
    with pytest.raises(PinSpaceExhausted, match="gate"):
        pin_for_locks({"bay-1": (NUKI, ()), "gate": (four, _all(4))})
    assert pin_for_locks({}) == {}


constraint_sets = st.builds(
    CodeConstraints,
    lengths=st.sets(st.integers(4, 8), min_size=1).map(lambda s: tuple(sorted(s))),
    no_zeros=st.booleans(),
    cannot_start_with_12=st.booleans(),
    no_triple_consecutive=st.booleans(),
    min_unique_digits=st.integers(0, 4),
    missing_digits=st.frozensets(st.sampled_from("0123456789"), max_size=4),
)
taken_pins = st.lists(st.text("0123456789", min_size=4, max_size=8), max_size=40)


@settings(max_examples=300, deadline=None)
@given(constraints=constraint_sets, taken=taken_pins)
def test_property_generated_pins_are_valid_strong_and_free(
    constraints: CodeConstraints, taken: list[str]
) -> None:
    # At least five keys and at most four distinct digits asked: a good PIN always exists.
    pin = generate_pin(constraints, taken=taken)
    assert breaks_lock_rules(pin, constraints) == []
    assert not looks_weak(pin)
    assert not shadows(pin, taken)


@settings(max_examples=200, deadline=None)
@given(locks=st.dictionaries(st.sampled_from("abcd"), st.tuples(constraint_sets, taken_pins)))
def test_property_pins_for_locks_meet_each_locks_constraints(
    locks: dict[str, tuple[CodeConstraints, list[str]]],
) -> None:
    pins = pin_for_locks(locks)
    assert pins.keys() == locks.keys()
    for key, (constraints, taken) in locks.items():
        assert breaks_lock_rules(pins[key], constraints) == []
        assert not looks_weak(pins[key])
        assert not shadows(pins[key], taken)
    common = common_constraints(c for c, _ in locks.values()) if locks else None
    if len(locks) > 1 and common is not None and len(common.missing_digits) <= 4:
        # Few taken PINs and enough keys: the booking gets one PIN everywhere.
        assert len(set(pins.values())) == 1


def _all(length: int) -> list[str]:
    return ["".join(p) for p in itertools.product("0123456789", repeat=length)]


def test_a_pin_per_lock_always_and_no_two_alike_when_asked() -> None:
    """An item whose own PIN is sent after the gate's: the gate's PIN never opens it."""
    for _ in range(300):
        pins = pin_for_locks({"bay-1": (NUKI, ()), "gate": (NUKI, ())}, one_pin=False)
        assert pins["bay-1"] != pins["gate"]
        assert breaks_lock_rules(pins["bay-1"], NUKI) == breaks_lock_rules(pins["gate"], NUKI)
