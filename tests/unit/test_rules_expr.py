import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rules import RuleSyntaxError, compile_condition, row_of


def run(text: str, features: dict[str, float] | None = None, tx: dict[str, object] | None = None,
        score: float = math.nan, lists: dict[str, frozenset[str]] | None = None) -> bool:  # fmt: skip
    return compile_condition(text, lists)((row_of(features or {}), tx or {}, score))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ip_distinct_cards_1h >= 8 and amount < 5", True),
        ("ip_distinct_cards_1h >= 8 and amount < 2", False),
        ("not (amount > 100) or card_count_5m > 1", True),
        ("amount * 2 + 1 == 7", True),
        ("amount / 0 > 1", False),  # division by zero is missing, and missing compares false
        ("-amount < 0", True),
        ("tx.country in ['KP', 'IR']", True),
        ("tx.country not in ['KP', 'IR']", False),
        ("tx.card_bin in @bins", True),
        ("tx.device_id is missing", True),
        ("tx.device_id is not missing", False),
        ("card_geo_speed_kmh > 900", False),  # NaN feature: comparisons are false...
        ("not (card_geo_speed_kmh > 900)", True),  # ...so `not` of one is true
        ("card_geo_speed_kmh is missing", True),
        ("score >= 0.5", True),
        ("true and not false", True),
        ("amount in [3, 4]", True),  # numbers match by value: 3.0 is 3
    ],
)
def test_conditions_evaluate_as_documented(text: str, expected: bool) -> None:
    features = {"ip_distinct_cards_1h": 12, "amount": 3.0, "card_count_5m": 0, "card_geo_speed_kmh": math.nan}
    tx = {"country": "KP", "card_bin": "411111", "device_id": None}
    assert run(text, features, tx, score=0.7, lists={"bins": frozenset({"411111"})}) is expected


def test_and_binds_tighter_than_or() -> None:
    assert run("amount > 1 or amount > 100 and amount < 0", {"amount": 5})
    assert not run("(amount > 1 or amount > 100) and amount < 0", {"amount": 5})


@pytest.mark.parametrize(
    ("text", "fragment", "column"),
    [
        ("amout > 5", "did you mean ['amount'", 1),
        ("tx.contry == 'FR'", "unknown transaction field 'contry'", 1),
        ("amount > ", "end of condition", 10),
        ("amount > 'x'", "cannot compare a number with a string", 8),
        ("amount and true", "needs true/false operands", 8),
        ("amount + 'x' > 1", "needs numbers", 8),
        ("tx.country in @nope", "unknown list @nope", 15),
        ("amount > 5)", "unexpected ')'", 11),
        ("amount ; 1", "unexpected character ';'", 8),
        ("amount", "must be true or false", 1),
        ("__import__('os').system('id')", "unexpected character '.'", 17),
        ("__import__ == 1", "unknown name '__import__'", 1),
        ("tx.__class__ == 1", "unknown transaction field '__class__'", 1),
        ("amount.real > 1", "unknown name 'amount.real'", 1),
    ],
)
def test_errors_say_where_and_why(text: str, fragment: str, column: int) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_condition(text, {})
    assert fragment in info.value.reason
    assert info.value.column == column


def test_depth_and_length_are_limited() -> None:
    with pytest.raises(RuleSyntaxError, match="nested deeper"):
        compile_condition("not " * 60 + "true")
    with pytest.raises(RuleSyntaxError, match="longer than"):
        compile_condition("amount > 1 and " * 300 + "true")


_names = st.sampled_from(["amount", "card_count_5m", "ip_count_1h"])
_ops = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


@st.composite
def comparison_trees(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return f"{draw(_names)} {draw(_ops)} {draw(st.integers(-2, 12))}"
    join = draw(st.sampled_from(["and", "or"]))
    left, right = draw(comparison_trees(depth + 1)), draw(comparison_trees(depth + 1))
    return f"({'not ' if draw(st.booleans()) else ''}({left}) {join} ({right}))"


@settings(max_examples=150, deadline=None)
@given(
    text=comparison_trees(),
    values=st.lists(st.one_of(st.integers(0, 10), st.just(math.nan)), min_size=3, max_size=3),
)
def test_compiled_conditions_agree_with_a_reference_evaluator(text: str, values: list[float]) -> None:
    features = dict(zip(["amount", "card_count_5m", "ip_count_1h"], values, strict=True))

    class Missing(float):  # reference semantics: comparisons with a missing value are false
        def __lt__(self, o: object) -> bool:
            return False

        __le__ = __gt__ = __ge__ = __lt__

        def __eq__(self, o: object) -> bool:
            return False

        def __ne__(self, o: object) -> bool:
            return False

        __hash__ = float.__hash__

    env = {k: Missing("nan") if math.isnan(v) else v for k, v in features.items()}
    reference = eval(text.replace("!=", "!="), {"__builtins__": {}}, env)
    assert run(text, features) is bool(reference)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_text_never_raises_anything_but_a_syntax_error(text: str) -> None:
    with contextlib.suppress(RuleSyntaxError):
        compile_condition(text, {})


def test_rows_are_numpy_and_conditions_read_by_index() -> None:
    row = row_of({"amount": 7.0})
    assert isinstance(row, np.ndarray)
    assert compile_condition("amount == 7")((row, {}, 0.0))
