"""Property tests: the rule condition language (pipeline/rules/expr.py) and the PAN check (pipeline/records.py).

For the rules, beyond tests/unit/test_rules_expr.py.

That file checks random *characters* (which rarely get past the tokenizer) and a reference evaluator over
comparisons of three features. Here the input is random *token sequences* of the language itself, Python
payloads in every position, and random evaluation contexts:

- compiling anything either works or raises `RuleSyntaxError`, nothing else;
- a compiled condition is total: for any row, transaction fields and score it returns True or False;
- `not`, `and`, `or` on compiled conditions behave as boolean algebra, whatever the operands are;
- Python code is refused, and neither compiling nor evaluating ever runs Python (an audit hook watches
  for `exec`, `compile`, imports, file opens and process spawns while the rule code runs).

For `pipeline.records.contains_pan` (a card number inside a longer value is refused like a PAN field): any
card number written as one is found wherever it sits in a value, and ordinary identifiers (UUIDs, epoch
timestamps, hex tokens) are never taken for one (tests/unit/test_records.py has the worked examples).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.features import FEATURE_NAMES
from pipeline.records import contains_pan
from pipeline.rules import RuleSyntaxError, compile_condition, row_of
from pipeline.rules.expr import TX_FIELDS, Compiled
from tests.fixtures.factories import luhn_complete

LISTS = {"deny": frozenset({"KP", "411111", "5"}), "empty": frozenset()}

# --- watching for Python being run --------------------------------------------------------------------

#: Audit events that mean Python source is being compiled or run, a module imported, a file opened or a
#: process started. None may happen while a condition is compiled or evaluated.
_FORBIDDEN_EVENTS = frozenset(
    {
        "exec", "compile", "import", "open", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "subprocess.Popen", "ctypes.dlopen", "socket.connect", "builtins.input", "builtins.breakpoint",
    }
)  # fmt: skip
_watching = False
_seen: list[tuple[str, tuple[Any, ...]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event in _FORBIDDEN_EVENTS:
        _seen.append((event, args))


sys.addaudithook(_audit)  # hooks cannot be removed; this one does nothing unless `_watching`


@contextmanager
def no_python_runs() -> Iterator[None]:
    global _watching
    _seen.clear()
    _watching = True
    try:
        yield
    finally:
        _watching = False
    assert not _seen, f"rule code ran Python: {_seen[:3]}"


def test_the_audit_guard_sees_python_being_run() -> None:
    """The guard itself can fail: eval and an import inside it are reported."""
    with pytest.raises(AssertionError, match="ran Python"), no_python_runs():
        eval("1 + 1")  # the very thing the rule language must never do
    with pytest.raises(AssertionError, match="import"), no_python_runs():
        sys.modules.pop("colorsys", None)
        __import__("colorsys")


# --- strategies -----------------------------------------------------------------------------------------

_NUMERIC_TX = ("amount", "lat", "lon")
_features = st.sampled_from(FEATURE_NAMES)
_tx_names = st.sampled_from(sorted(f"tx.{f}" for f in TX_FIELDS))
_bogus_names = st.sampled_from(
    ["foo", "tx.nope", "tx.__class__", "__import__", "__builtins__", "lambda", "import", "eval", "os.system",
     "amount.real", "score.__class__", "globals", "self", "None", "True"]
)  # fmt: skip
_numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.4f}"),
    st.sampled_from(["0", "1e999", "1e-999", "5.0", "2.5e3", "007"]),
)
_strings = st.text(alphabet=st.characters(blacklist_characters="'\\\n"), max_size=6).map(lambda s: f"'{s}'")
_tokens = st.one_of(
    _features,
    _tx_names,
    st.just("score"),
    _bogus_names,
    _numbers,
    _strings,
    st.sampled_from(["and", "or", "not", "in", "is", "missing", "true", "false", "null", "@deny", "@empty", "@nope"]),
    st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "(", ")", "[", "]", ","]),
    st.sampled_from([";", ".", "'", '"', "\\", "$", "{", "}", "`", "\x00", "é", "**", "%", "=", ":", "#"]),
)
_atoms = st.one_of(
    _features, _tx_names, st.just("score"), _numbers, _strings, st.sampled_from(["true", "false", "null"])
)
_collections = st.one_of(
    st.sampled_from(["@deny", "@empty"]),
    st.lists(st.one_of(_numbers, _strings), max_size=3).map(lambda i: f"[{', '.join(i)}]"),
)
#: Expressions of the grammar (operands of any type, so some are type errors), by precedence level.
_operand = st.deferred(
    lambda: st.one_of(
        _atoms,
        _atoms.map(lambda a: f"-{a}"),
        st.builds(lambda a, op, b: f"{a} {op} {b}", _operand, st.sampled_from(["+", "-", "*", "/"]), _operand),
        _expression.map(lambda e: f"({e})"),
    )
)
_expression = st.deferred(
    lambda: st.one_of(
        _operand,
        st.builds(
            lambda a, op, b: f"{a} {op} {b}", _operand, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _operand
        ),
        st.builds(lambda a, neg, c: f"{a} {neg}in {c}", _operand, st.sampled_from(["", "not "]), _collections),
        st.builds(lambda a, neg: f"{a} is {neg}missing", _operand, st.sampled_from(["", "not "])),
        _expression.map(lambda e: f"not {e}"),
        st.builds(lambda a, op, b: f"{a} {op} {b}", _expression, st.sampled_from(["and", "or"]), _expression),
    )
)


@st.composite
def near_grammar(draw: st.DrawFn) -> str:
    """A grammar expression, then a few random token edits: mostly valid, often just off."""
    tokens = draw(_expression).split(" ")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(tokens)))
        if draw(st.booleans()) and at < len(tokens):
            del tokens[at]
        else:
            tokens.insert(at, draw(_tokens))
    return " ".join(tokens)


token_soup = st.one_of(_expression, near_grammar(), st.lists(_tokens, min_size=1, max_size=25).map(" ".join))


@st.composite
def contexts(draw: st.DrawFn) -> tuple[Any, dict[str, Any], float]:
    """A feature row, transaction fields and a score, as the worker passes them (missing values included)."""
    value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 10**6).map(float))
    features = draw(st.dictionaries(_features, value, max_size=12))
    tx: dict[str, Any] = {}
    for name in sorted(TX_FIELDS):
        if name in _NUMERIC_TX:
            tx[name] = draw(st.one_of(st.none(), st.floats(-180, 1e7, allow_nan=False)))
        else:
            tx[name] = draw(st.one_of(st.none(), st.sampled_from(["KP", "FR", "411111", "5", ""]), st.text(max_size=8)))
    score = draw(st.one_of(st.floats(0, 1), st.just(math.nan)))
    return row_of(features), tx, score


def compile_or_none(text: str) -> Compiled | None:
    try:
        return compile_condition(text, LISTS)
    except RuleSyntaxError as e:
        assert e.line >= 1 and e.column >= 1 and e.reason, "a refusal says where and why"
        return None


# --- properties -------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=token_soup, context=contexts())
def test_any_token_sequence_is_refused_with_a_syntax_error_or_compiles_to_a_total_condition(
    text: str, context: tuple[Any, dict[str, Any], float]
) -> None:
    with no_python_runs():
        condition = compile_or_none(text)
        result = None if condition is None else condition(context)
    if condition is not None:
        assert type(result) is bool, f"{text!r} gave {result!r}"


_comparisons = st.one_of(
    st.builds(lambda f, op, n: f"{f} {op} {n}", _features, st.sampled_from(["<", ">=", "==", "!="]), _numbers),
    st.builds(lambda f: f"{f} in @deny", _tx_names),
    st.builds(lambda f: f"{f} is missing", st.one_of(_features, _tx_names)),
    st.builds(lambda f, n: f"score + {f} * 2 > {n}", _features, _numbers),
    st.sampled_from(["true", "false", "null", "tx.country == 'KP'", "-amount < 0", "amount / 0 > 1"]),
)
_conditions = st.recursive(
    _comparisons,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=_conditions, b=_conditions, context=contexts())
def test_not_and_or_are_boolean_algebra_over_any_compiled_conditions(
    a: str, b: str, context: tuple[Any, dict[str, Any], float]
) -> None:
    def run(text: str) -> bool:
        result = compile_condition(text, LISTS)(context)
        assert type(result) is bool
        return result

    with no_python_runs():
        x, y = run(a), run(b)
        assert run(f"not ({a})") is (not x)
        assert run(f"({a}) and ({b})") is (x and y)
        assert run(f"({a}) or ({b})") is (x or y)
        assert run(f"not (({a}) and ({b}))") is run(f"(not ({a})) or (not ({b}))")  # De Morgan


PYTHON_PAYLOADS = [
    "__import__('os').system('touch /tmp/riskstream-pwned')",
    "().__class__.__bases__[0].__subclasses__()",
    "lambda: 1",
    "lambda tx: tx.amount > 1",
    "eval('1')",
    "exec('import os')",
    "open('/etc/passwd').read()",
    "getattr(tx, 'card_id')",
    "tx.__dict__",
    "tx.card_id.upper() == 'X'",
    "score.__class__",
    "[c for c in 'ab']",
    "f'{1}' == '1'",
    "globals()",
    "__builtins__",
    "import os",
    "breakpoint()",
    "amount if true else 1",
    "amount.__add__(1) > 0",
    "sys.modules",
    "amount > 1; import os",
    "amount ** 2 > 1",
]
_PAYLOAD_PLACES = ["{}", "amount > 1 and {}", "not ({})", "({}) or true", "tx.country in [{}]", "score + {} > 1"]


@settings(max_examples=200, deadline=None)
@given(payload=st.sampled_from(PYTHON_PAYLOADS), place=st.sampled_from(_PAYLOAD_PLACES))
def test_python_code_anywhere_in_a_condition_is_refused_and_never_runs(payload: str, place: str) -> None:
    text = place.format(payload)
    with no_python_runs(), pytest.raises(RuleSyntaxError):
        compile_condition(text, LISTS)


# --- card numbers inside text (pipeline.records.contains_pan) ------------------------------------------


_pans = st.builds(
    lambda first, rest: luhn_complete(first + rest),
    st.sampled_from("23456"),
    st.text(alphabet="0123456789", min_size=14, max_size=14),
)
_written = st.sampled_from(["plain", "spaces", "dashes"])
_around = st.text(alphabet=st.sampled_from(list("-:/._@= ,")), max_size=2)
_words = st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz-:/._ ")), max_size=12)


@settings(max_examples=300, deadline=None)
@given(pan=_pans, written=_written, before=_words, after=_words, left=_around, right=_around)
def test_a_card_number_anywhere_in_a_value_is_found(
    pan: str, written: str, before: str, after: str, left: str, right: str
) -> None:
    groups = [pan[i : i + 4] for i in range(0, 16, 4)]
    shown = {"plain": pan, "spaces": " ".join(groups), "dashes": "-".join(groups)}[written]
    # Letters may come before or after, but not glued to the digits (that case is documented as missed).
    value = f"{before}{left or '-' if before else left}{shown}{right or '-' if after else right}{after}"
    assert contains_pan(value), value


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: u.hex),
        st.uuids().map(lambda u: f"tx-{u.hex}"),
        st.integers(10**12, 2 * 10**12).map(lambda ms: f"tx-{ms}"),  # epoch milliseconds
        st.integers(10**15, 2 * 10**15).map(lambda us: f"order:{us}"),  # epoch microseconds
        st.integers(0, 10**11).map(lambda n: f"card-{n}"),  # fewer than 13 digits
    )
)
def test_ordinary_identifiers_are_never_taken_for_a_card_number(value: str) -> None:
    assert not contains_pan(value), value


def test_a_card_number_that_fails_the_luhn_check_is_not_one() -> None:
    valid = luhn_complete("411111111111111")
    invalid = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    assert contains_pan(f"m-{valid}") and not contains_pan(f"m-{invalid}")
