"""The rule condition language: parsed by hand, compiled once into closures; user text is never `eval`ed.

    ip_distinct_cards_1h >= 8 and amount < 5
    tx.country in @deny_countries or tx.card_bin in ['411111', '550000']
    card_geo_speed_kmh > 900 and not (tx.channel == 'ecom')
    device_id is missing

Names: feature names (`pipeline.features.FEATURE_NAMES`), transaction fields as `tx.<field>`, and `score`
(the calibrated model score). `@name` is a list file (`rules/lists/<name>.txt`). Missing values (an absent
optional field, a NaN feature) make every comparison and `in` false and arithmetic missing; test them
with `is missing` / `is not missing`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pipeline.rules.vector as vector
from pipeline.features import FEATURE_NAMES
from pipeline.records import Transaction
from pipeline.rules.vector import ColumnFn
from pipeline.rules.vector import as_key as _as_key

TX_FIELDS: frozenset[str] = frozenset(Transaction.model_fields)
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
MAX_LENGTH = 2000
MAX_DEPTH = 40

#: Evaluation context: (feature row, transaction fields, score).
Context = tuple[Any, Mapping[str, Any], float]
Compiled = Callable[[Context], Any]


class RuleSyntaxError(ValueError):
    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason, self.line, self.column = message, line, column


_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<str>'[^'\\]*'|"[^"\\]*")"""
    r"""|(?P<list>@[A-Za-z_][A-Za-z0-9_]*)|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)"""
    r"""|(?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,)"""
)
_KEYWORDS = {"and", "or", "not", "in", "is", "missing", "true", "false", "null"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise RuleSyntaxError(f"unexpected character {text[pos]!r}", *_line_col(text, pos))
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            tokens.append(Token("kw" if kind == "name" and value in _KEYWORDS else kind, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# Node kinds carry a static type: "num", "str", "bool" or "any" (only `null`). Each node is compiled twice
# from the one parse: `fn` for one row, `vec` for whole columns (`pipeline.rules.vector`).
@dataclass
class Node:
    fn: Compiled
    type: str
    pos: int
    vec: ColumnFn


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b), "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b), ">": lambda a, b: bool(a > b), ">=": lambda a, b: bool(a >= b),
}  # fmt: skip
_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b != 0 else math.nan,
}  # fmt: skip


class _Parser:
    def __init__(self, text: str, lists: Mapping[str, frozenset[str]]) -> None:
        self.text, self.lists = text, lists
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str, token: Token | None = None) -> RuleSyntaxError:
        token = token or self.tokens[self.i]
        return RuleSyntaxError(message, *_line_col(self.text, token.pos))

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self, text: str | None = None) -> Token:
        token = self.tokens[self.i]
        if text is not None and token.text != text:
            raise self.error(f"expected {text!r}, found {token.text or 'end of condition'!r}")
        self.i += 1
        return token

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        if node.type not in ("bool", "any"):
            raise self.error("a condition must be true or false (a comparison, `in`, `is missing`...)", self.tokens[0])
        return node

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"condition nested deeper than {MAX_DEPTH} levels")
        try:
            return parse()
        finally:
            self.depth -= 1

    def or_expr(self) -> Node:
        left = self.and_expr()
        while self.peek().text == "or":
            tok = self.take()
            right = self.and_expr()
            lb, rb = self._bool(left, tok), self._bool(right, tok)
            left = Node(_either(lb.fn, rb.fn), "bool", tok.pos, vector.either(lb.vec, rb.vec))
        return left

    def and_expr(self) -> Node:
        left = self.not_expr()
        while self.peek().text == "and":
            tok = self.take()
            right = self.not_expr()
            lb, rb = self._bool(left, tok), self._bool(right, tok)
            left = Node(_both(lb.fn, rb.fn), "bool", tok.pos, vector.both(lb.vec, rb.vec))
        return left

    def not_expr(self) -> Node:
        if self.peek().text == "not":
            tok = self.take()
            inner = self._bool(self.nested(self.not_expr), tok)
            return Node(_negation(inner.fn), "bool", tok.pos, vector.negation(inner.vec))
        return self.comparison()

    def _bool(self, node: Node, tok: Token) -> Node:
        if node.type not in ("bool", "any"):
            raise self.error(f"`{tok.text}` needs true/false operands, not a {node.type}", tok)
        fn = node.fn

        def as_bool(c: Context) -> bool:
            v = fn(c)
            return False if _missing(v) else bool(v)

        return Node(as_bool, "bool", node.pos, vector.as_bool(node.type, node.vec))

    def comparison(self) -> Node:
        left = self.sum_expr()
        tok = self.peek()
        if tok.text in _COMPARE:
            self.take()
            right = self.sum_expr()
            if {left.type, right.type} == {"num", "str"}:
                raise self.error(f"cannot compare a number with a string using {tok.text}", tok)
            op, lf, rf = _COMPARE[tok.text], left.fn, right.fn

            def compare(c: Context) -> bool:
                a, b = lf(c), rf(c)
                if _missing(a) or _missing(b):
                    return False
                try:
                    return op(a, b)
                except TypeError:
                    return False

            vec = vector.compare(tok.text, (left.type, left.vec), (right.type, right.vec))
            return Node(compare, "bool", tok.pos, vec)
        if tok.text == "in" or (tok.text == "not" and self.tokens[self.i + 1].text == "in"):
            negate = self.take().text == "not"
            if negate:
                self.take("in")
            values = self.collection()
            lf = left.fn

            def member(c: Context) -> bool:
                v = lf(c)
                if _missing(v):
                    return False
                return (_as_key(v) in values) != negate

            return Node(member, "bool", tok.pos, vector.member(left.type, left.vec, values, negate))
        if tok.text == "is":
            self.take()
            negate = self.peek().text == "not"
            if negate:
                self.take()
            self.take("missing")
            lf = left.fn
            vec = vector.is_missing(left.type, left.vec, negate)
            return Node(lambda c: _missing(lf(c)) != negate, "bool", tok.pos, vec)
        return left

    def collection(self) -> frozenset[str]:
        tok = self.peek()
        if tok.kind == "list":
            self.take()
            name = tok.text[1:]
            if name not in self.lists:
                hint = difflib.get_close_matches(name, list(self.lists), n=3)
                raise self.error(f"unknown list @{name}" + (f"; did you mean {hint}?" if hint else ""), tok)
            return self.lists[name]
        self.take("[")
        items: list[str] = []
        while self.peek().text != "]":
            item = self.take()
            if item.kind == "str":
                items.append(item.text[1:-1])
            elif item.kind == "num":
                items.append(_as_key(float(item.text)))
            else:
                raise self.error("list items must be strings or numbers", item)
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != "]":
                raise self.error("expected ',' or ']' in list")
        self.take("]")
        return frozenset(items)

    def sum_expr(self) -> Node:
        left = self.product()
        while self.peek().text in ("+", "-"):
            tok = self.take()
            left = self._arith(left, self.product(), tok)
        return left

    def product(self) -> Node:
        left = self.unary()
        while self.peek().text in ("*", "/"):
            tok = self.take()
            left = self._arith(left, self.unary(), tok)
        return left

    def _arith(self, left: Node, right: Node, tok: Token) -> Node:
        for side in (left, right):
            if side.type not in ("num", "any"):
                raise self.error(f"`{tok.text}` needs numbers, not a {side.type}", tok)
        op, lf, rf = _ARITH[tok.text], left.fn, right.fn

        def arith(c: Context) -> Any:
            a, b = lf(c), rf(c)
            if _missing(a) or _missing(b) or isinstance(a, str) or isinstance(b, str):
                return None
            return op(float(a), float(b))

        return Node(arith, "num", tok.pos, vector.arith(tok.text, left.vec, right.vec))

    def unary(self) -> Node:
        if self.peek().text == "-":
            tok = self.take()
            inner = self.nested(self.unary)
            if inner.type not in ("num", "any"):
                raise self.error("`-` needs a number", tok)
            f = inner.fn

            def negate(c: Context) -> Any:
                v = f(c)
                return None if _missing(v) or isinstance(v, str) else -v

            return Node(negate, "num", tok.pos, vector.negative(inner.vec))
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            node = self.nested(self.or_expr)
            self.take(")")
            return node
        if tok.kind == "num":
            value = float(tok.text)
            return Node(lambda c: value, "num", tok.pos, vector.constant(value, "num"))
        if tok.kind == "str":
            text = tok.text[1:-1]
            return Node(lambda c: text, "str", tok.pos, vector.constant(text, "str"))
        if tok.text in ("true", "false"):
            flag = tok.text == "true"
            return Node(lambda c: flag, "bool", tok.pos, vector.constant(flag, "bool"))
        if tok.text == "null":
            return Node(lambda c: None, "any", tok.pos, vector.constant(None, "any"))
        if tok.kind == "name":
            return self.name(tok)
        raise self.error(f"unexpected {tok.text or 'end of condition'!r}", tok)

    def name(self, tok: Token) -> Node:
        name = tok.text
        if name == "score":
            return Node(lambda c: c[2], "num", tok.pos, vector.score())
        if name.startswith("tx."):
            field = name[3:]
            if field not in TX_FIELDS:
                hint = difflib.get_close_matches(field, sorted(TX_FIELDS), n=3)
                raise self.error(
                    f"unknown transaction field {field!r}" + (f"; did you mean {hint}?" if hint else ""), tok
                )
            kind = "num" if field in ("amount", "lat", "lon") else "str"
            return Node(lambda c: c[1].get(field), kind, tok.pos, vector.tx_field(field, kind))
        index = _FEATURE_INDEX.get(name)
        if index is None:
            known = [*FEATURE_NAMES, "score", *(f"tx.{f}" for f in TX_FIELDS)]
            hint = difflib.get_close_matches(name, known, n=3)
            raise self.error(f"unknown name {name!r}" + (f"; did you mean {hint}?" if hint else ""), tok)
        return Node(lambda c: float(c[0][index]), "num", tok.pos, vector.feature(index))


def _either(lf: Compiled, rf: Compiled) -> Compiled:
    return lambda c: lf(c) or rf(c)


def _both(lf: Compiled, rf: Compiled) -> Compiled:
    return lambda c: lf(c) and rf(c)


def _negation(f: Compiled) -> Compiled:
    return lambda c: not f(c)


@dataclass(frozen=True)
class Condition:
    """A condition compiled for one row (`row`: (feature row, tx fields, score) → bool) and for whole
    columns (`columns`: `vector.Frame` → bool array), from the same parse."""

    row: Compiled
    columns: ColumnFn


def compile_rule_condition(text: str, lists: Mapping[str, frozenset[str]] | None = None) -> Condition:
    """Parse once, compile both forms."""
    if len(text) > MAX_LENGTH:
        raise RuleSyntaxError(f"condition longer than {MAX_LENGTH} characters")
    node = _Parser(text, lists or {}).parse()
    fn, vec = node.fn, vector.as_bool(node.type, node.vec)
    return Condition(row=lambda c: fn(c) is True, columns=vec)


def compile_condition(text: str, lists: Mapping[str, frozenset[str]] | None = None) -> Compiled:
    """Parse and compile once; the result maps (row, tx fields, score) to True/False."""
    return compile_rule_condition(text, lists).row


def referenced_names(text: str) -> Sequence[str]:
    """Feature and field names a condition reads (for reason texts)."""
    return [t.text for t in tokenize(text) if t.kind == "name"]
