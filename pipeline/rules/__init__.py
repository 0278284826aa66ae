"""YAML rules with audit / shadow / enforce states, a safe condition language, and the decision."""

from pipeline.rules.decision import DecisionResult, decide
from pipeline.rules.engine import (
    ACTIONS,
    STATES,
    Rule,
    RuleHit,
    RulesError,
    RuleSet,
    empty_rules,
    load_rules,
    row_of,
)
from pipeline.rules.expr import RuleSyntaxError, compile_condition
from pipeline.rules.watch import RulesWatcher

__all__ = [
    "ACTIONS",
    "STATES",
    "DecisionResult",
    "Rule",
    "RuleHit",
    "RuleSet",
    "RuleSyntaxError",
    "RulesError",
    "RulesWatcher",
    "compile_condition",
    "decide",
    "empty_rules",
    "load_rules",
    "row_of",
]
