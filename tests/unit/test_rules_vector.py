"""The column form of a rule condition and of the decision equals the per-row form, row by row.

Hypothesis writes well-typed conditions over features, transaction fields, the score and literals (null,
lists, arithmetic, nested and/or/not) and frames full of the awkward values: NaN features, absent and None
fields, NaN in a text column, 0 and -0.0, inf, huge numbers, numbers that print as list items.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.features import FEATURE_NAMES
from pipeline.rules import decide
from pipeline.rules.decision import DECISIONS, decide_columns
from pipeline.rules.engine import Rule, RuleSet
from pipeline.rules.expr import RuleSyntaxError, compile_rule_condition
from pipeline.rules.vector import Frame

FEATURES = ("amount", "card_count_5m", "ip_distinct_cards_1h", "card_geo_speed_kmh")
NUM_FIELDS = ("tx.amount", "tx.lat")
STR_FIELDS = ("tx.country", "tx.card_bin", "tx.device_id")
LISTS = {"deny": frozenset({"FR", "5", "5.5", "True", "-3", "1e+300", "inf"})}

numbers = st.sampled_from(["0", "1", "3", "5", "5.5", "0.5", "1e300", "2.5e-3", "900"])
strings = st.sampled_from(["'FR'", "'DE'", "'5'", "'5.5'", "''", "'True'", "'411111'"])
list_literals = st.sampled_from(["['FR', 'DE']", "[5, 3, 'KP']", "[5.5, 'True', 0]", "[]", "@deny", "['False']"])


def num_expr() -> st.SearchStrategy[str]:
    leaves = st.one_of(st.sampled_from([*FEATURES, *NUM_FIELDS, "score", "null"]), numbers)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"-{e}"),
        ),
        max_leaves=4,
    )


str_expr = st.one_of(st.sampled_from([*STR_FIELDS, "null"]), strings)
comparators = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def bool_expr() -> st.SearchStrategy[str]:
    nums = num_expr()
    atoms = st.one_of(
        st.tuples(nums, comparators, nums).map(" ".join),
        st.tuples(str_expr, comparators, str_expr).map(" ".join),
        st.tuples(str_expr, st.sampled_from(["==", "!=", "<"]), st.sampled_from(["true", "false"])).map(" ".join),
        st.tuples(st.one_of(nums, str_expr), st.sampled_from(["in", "not in"]), list_literals).map(" ".join),
        st.tuples(st.one_of(nums, str_expr), st.sampled_from(["is missing", "is not missing"])).map(" ".join),
        st.sampled_from(["true", "false", "null"]),
    )
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"not ({e})"),
            st.tuples(inner, comparators, st.one_of(inner, nums)).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
            st.tuples(inner, st.sampled_from(["in", "not in"]), list_literals).map(lambda t: f"({t[0]}) {t[1]} {t[2]}"),
        ),
        max_leaves=6,
    )


number_values = st.sampled_from(
    [math.nan, 0.0, -0.0, 1.0, 3.0, 5.0, 5.5, -3.0, 0.5, 900.5, 1e300, -1e300, math.inf, -math.inf, 2.5e-3]
)
text_values = st.sampled_from([None, math.nan, "FR", "DE", "5", "5.5", "", "True", "411111", "KP"])


@st.composite
def frames(draw: st.DrawFn) -> tuple[Frame, list[tuple[Any, dict[str, Any], float]]]:
    """A frame and the same data as per-row contexts (an absent field is a missing key, a None or NaN value)."""
    n = draw(st.integers(1, 12))
    matrix = np.full((n, len(FEATURE_NAMES)), math.nan)
    for name in FEATURES:
        matrix[:, FEATURE_NAMES.index(name)] = draw(st.lists(number_values, min_size=n, max_size=n))
    tx: dict[str, Any] = {}
    for name in NUM_FIELDS:
        if draw(st.booleans()):
            tx[name[3:]] = np.asarray(draw(st.lists(number_values, min_size=n, max_size=n)), dtype=np.float64)
    for name in STR_FIELDS:
        if draw(st.booleans()):
            tx[name[3:]] = np.asarray(draw(st.lists(text_values, min_size=n, max_size=n)), dtype=object)
    scores = np.asarray(draw(st.lists(number_values, min_size=n, max_size=n)), dtype=np.float64)
    rows = [
        (matrix[i], {k: v[i] for k, v in tx.items() if not (v[i] is None and draw(st.booleans()))}, float(scores[i]))
        for i in range(n)
    ]
    return Frame(matrix, tx, scores), rows


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=bool_expr(), data=frames())
def test_a_condition_over_columns_equals_it_row_by_row(
    text: str, data: tuple[Frame, list[tuple[Any, dict[str, Any], float]]]
) -> None:
    frame, rows = data
    try:
        condition = compile_rule_condition(text, LISTS)
    except RuleSyntaxError:
        return  # the parser's type checks refuse it (a number compared with a string): refused either way
    expected = [condition.row(context) for context in rows]
    got = condition.columns(frame)
    assert got.dtype == bool and got.shape == (frame.rows,)
    assert got.tolist() == expected, text


@pytest.mark.parametrize(
    ("text", "tx", "expected"),
    [
        ("tx.amount in [5]", {"amount": 5.0}, True),  # 5.0 prints as '5'
        ("tx.amount in ['5.0']", {"amount": 5.0}, False),  # ...not as '5.0'
        ("tx.amount in @deny", {"amount": -3.0}, True),
        ("tx.amount in @deny", {"amount": math.inf}, True),
        ("tx.amount not in @deny", {"amount": math.nan}, False),  # missing: `in` and `not in` both false
        ("tx.country not in ['FR']", {"country": math.nan}, False),
        ("tx.country == true", {"country": "FR"}, False),
        ("tx.country != true", {"country": "FR"}, True),
        ("tx.country < true", {"country": "FR"}, False),  # ordering text and a boolean is a TypeError: false
        ("(amount > 1) == 1", {}, True),  # True == 1.0
        ("amount / 0 is missing", {}, True),
        ("tx.lat is missing", {}, True),
    ],
)
def test_edge_cases_agree(text: str, tx: dict[str, Any], expected: bool) -> None:
    row = np.full(len(FEATURE_NAMES), math.nan)
    row[FEATURE_NAMES.index("amount")] = 3.0
    condition = compile_rule_condition(text, LISTS)
    columns = {k: np.asarray([v], dtype=object if isinstance(v, str) else np.float64) for k, v in tx.items()}
    if "country" in tx and not isinstance(tx["country"], str):
        columns["country"] = np.asarray([tx["country"]], dtype=object)
    assert condition.row((row, tx, math.nan)) is expected
    assert condition.columns(Frame(row[None, :], columns, np.asarray([math.nan]))).tolist() == [expected]


rule_specs = st.lists(
    st.tuples(
        bool_expr(),
        st.sampled_from(["approve", "review", "challenge", "decline"]),
        st.sampled_from(["audit", "shadow", "enforce", "enforce"]),
        st.one_of(st.none(), st.sampled_from([0.0, 0.3, 0.95, 1.0])),
    ),
    min_size=0,
    max_size=5,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=rule_specs,
    data=frames(),
    review=st.sampled_from([0.0, 0.4, 0.5, 0.9]),
    decline=st.sampled_from([0.5, 0.9, 1.0, 0.3]),
)
def test_decisions_over_columns_equal_decide_row_by_row(
    specs: list[tuple[str, str, str, float | None]],
    data: tuple[Frame, list[tuple[Any, dict[str, Any], float]]],
    review: float,
    decline: float,
) -> None:
    frame, rows = data
    rules = []
    for j, (text, action, state, override) in enumerate(specs):
        try:
            condition = compile_rule_condition(text, LISTS)
        except RuleSyntaxError:
            continue
        rules.append(Rule(f"r{j}", "", text, action, state, condition.row, override, None, condition.columns))
    rule_set = RuleSet(version="t", rules=tuple(rules), lists=LISTS)
    thresholds = {"review": review, "decline": decline}
    fired = rule_set.evaluate_frame(frame)
    ranks, finals = decide_columns(frame.scores(), thresholds, rule_set.rules, fired)
    for i, (row, tx, score) in enumerate(rows):
        hits = rule_set.evaluate_row(row, tx, score)
        assert [h.id for h in hits] == [r.id for r, f in zip(rule_set.rules, fired[i], strict=True) if f]
        result = decide(score, thresholds, hits)
        assert DECISIONS[ranks[i]] == result.decision
        assert finals[i] == result.score or (math.isnan(finals[i]) and math.isnan(result.score))
