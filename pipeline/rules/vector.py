"""Rule conditions over whole columns at once: the column twin of `expr`'s per-row closures.

`expr`'s parser builds both forms side by side from the same parse, so the language, its type checks and
its errors exist once; this module only says what each operation does to a column. Backtests evaluate a
rule set over months of history in one pass per operation instead of one closure call per row per rule.

Representation, by the node's static type (see `expr.Node`): `num` is float64 with NaN for missing, `str`
an object array with None (or NaN, as pandas leaves it) for missing, `bool` a bool array (never missing),
`any` (only `null`) a float64 array of NaN. The per-row semantics hold element by element: a missing
operand makes comparisons and `in` false and arithmetic missing; membership compares the text of a value
(`as_key`), so 5.0 is the list item '5'. `tests/unit/test_rules_vector.py` checks the two forms agree
on generated conditions and frames.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Frame:
    """The columns a rule set reads: the feature matrix (rows in `FEATURE_NAMES` order), transaction
    fields by name (numbers as float64, text as object arrays) and the calibrated model score."""

    features: npt.NDArray[np.float64]
    tx: Mapping[str, Array] = field(default_factory=dict)
    score: npt.NDArray[np.float64] | None = None

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])

    def field(self, name: str, kind: str) -> Array:
        """A transaction field's column; an absent column is missing on every row, as an absent key is."""
        column = self.tx.get(name)
        if column is not None:
            return column
        return np.full(self.rows, math.nan) if kind == "num" else np.full(self.rows, None, dtype=object)

    def scores(self) -> npt.NDArray[np.float64]:
        return self.score if self.score is not None else np.full(self.rows, math.nan)


ColumnFn = Callable[[Frame], Array]

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip


def missing(kind: str, values: Array) -> BoolArray:
    if kind == "bool":
        return np.zeros(len(values), dtype=bool)
    if kind == "str":
        import pandas as pd  # here, not at import: the worker, which never evaluates columns, loads no pandas

        return np.asarray(pd.isna(values), dtype=bool)
    return np.isnan(values)


def feature(index: int) -> ColumnFn:
    return lambda f: f.features[:, index]


def tx_field(name: str, kind: str) -> ColumnFn:
    return lambda f: f.field(name, kind)


def score() -> ColumnFn:
    return lambda f: f.scores()


def constant(value: Any, kind: str) -> ColumnFn:
    if kind == "str":
        return lambda f: np.full(f.rows, value, dtype=object)
    if kind == "bool":
        return lambda f: np.full(f.rows, bool(value))
    fill = math.nan if value is None else float(value)
    return lambda f: np.full(f.rows, fill)


def compare(op: str, left: tuple[str, ColumnFn], right: tuple[str, ColumnFn]) -> ColumnFn:
    (lt, lf), (rt, rf) = left, right
    fn = _OPS[op]
    if "any" in (lt, rt):  # null: always missing
        return lambda f: np.zeros(f.rows, dtype=bool)
    if "str" not in (lt, rt):  # numbers and booleans compare as numbers (True == 1.0), as in Python

        def numeric(f: Frame) -> BoolArray:
            a, b = lf(f), rf(f)
            valid = ~(missing(lt, a) | missing(rt, b))
            return np.asarray(fn(a.astype(np.float64), b.astype(np.float64)), dtype=bool) & valid

        return numeric
    if lt == rt:  # text with text

        def text(f: Frame) -> BoolArray:
            a, b = lf(f), rf(f)
            valid = ~(missing(lt, a) | missing(rt, b))
            out = np.zeros(f.rows, dtype=bool)
            out[valid] = [bool(fn(x, y)) for x, y in zip(a[valid], b[valid], strict=True)]
            return out

        return text
    # text with a boolean: never equal, always unequal, and ordering them is a TypeError (false)
    side, sf = (lt, lf) if lt == "str" else (rt, rf)
    if op in ("==", "!="):
        result = op == "!="
        return lambda f: ~missing(side, sf(f)) & result
    return lambda f: np.zeros(f.rows, dtype=bool)


def as_key(value: Any) -> str:
    """Membership compares text: 5 and 5.0 and '5' are the same list item."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number_keys(values: frozenset[str]) -> npt.NDArray[np.float64]:
    """The numbers whose text (`as_key`) is a list item: float(item) when it prints back as the item."""
    out = []
    for item in values:
        try:
            number = float(item)
        except ValueError:
            continue
        if not math.isnan(number) and as_key(number) == item:
            out.append(number)
    return np.asarray(out, dtype=np.float64)


def member(kind: str, fn: ColumnFn, values: frozenset[str], negate: bool) -> ColumnFn:
    if kind == "any":
        return lambda f: np.zeros(f.rows, dtype=bool)
    if kind == "bool":
        when_true, when_false = ("True" in values) != negate, ("False" in values) != negate
        return lambda f: np.where(fn(f), when_true, when_false)
    if kind == "num":
        keys = _number_keys(values)

        def number_in(f: Frame) -> BoolArray:
            a = fn(f)
            found: BoolArray = np.isin(a, keys)
            return np.logical_xor(found, negate) & ~np.isnan(a)

        return number_in
    lookup = list(values)

    def text_in(f: Frame) -> BoolArray:
        import pandas as pd

        a = fn(f)
        found: BoolArray = pd.Series(a, copy=False).isin(lookup).to_numpy(dtype=bool)
        return np.logical_xor(found, negate) & ~missing("str", a)

    return text_in


def is_missing(kind: str, fn: ColumnFn, negate: bool) -> ColumnFn:
    if kind == "any":
        return lambda f: np.full(f.rows, not negate)
    return lambda f: missing(kind, fn(f)) != negate


def as_bool(kind: str, fn: ColumnFn) -> ColumnFn:
    """An operand of and / or / not: a missing value (only `null` can be) is false."""
    if kind == "any":
        return lambda f: np.zeros(f.rows, dtype=bool)
    return fn


def both(lf: ColumnFn, rf: ColumnFn) -> ColumnFn:
    return lambda f: lf(f) & rf(f)


def either(lf: ColumnFn, rf: ColumnFn) -> ColumnFn:
    return lambda f: lf(f) | rf(f)


def negation(fn: ColumnFn) -> ColumnFn:
    return lambda f: ~fn(f)


def arith(op: str, lf: ColumnFn, rf: ColumnFn) -> ColumnFn:
    """IEEE arithmetic as Python floats do it (overflow is inf, inf - inf is NaN); x / 0 is missing."""

    def compute(f: Frame) -> npt.NDArray[np.float64]:
        a, b = np.asarray(lf(f), dtype=np.float64), np.asarray(rf(f), dtype=np.float64)
        with np.errstate(all="ignore"):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            return np.where(b != 0, a / b, math.nan)

    return compute


def negative(fn: ColumnFn) -> ColumnFn:
    return lambda f: -np.asarray(fn(f), dtype=np.float64)
