"""Rule sets: YAML files of rules plus list files, loaded whole or refused whole.

A rule file (`rules/*.yaml`) holds `rules:`, each with `id`, `description`, `when` (see `expr`),
`action` (approve | review | decline | challenge), `state` (audit | shadow | enforce), and optionally
`score` (an override in [0, 1], applied when an enforced rule fires) and `reason` (text shown on the
verdict; `{feature}` placeholders are filled with the transaction's values). Lists are
`rules/lists/<name>.txt`, one value per line, `#` comments. The version is a hash of every file's content.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from pipeline.features import FEATURE_NAMES
from pipeline.rules.expr import Compiled, RuleSyntaxError, compile_rule_condition
from pipeline.rules.vector import ColumnFn, Frame

ACTIONS = ("approve", "review", "decline", "challenge")
STATES = ("audit", "shadow", "enforce")
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
#: The files of a rule set: rule files at the top, list files under `lists/`.
_FILE_NAME = re.compile(r"(?!\.)[^/\\\x00-\x1f]{1,120}\.ya?ml|lists/(?!\.)[^/\\\x00-\x1f]{1,120}\.txt")
_RULE_KEYS = {"id", "description", "when", "action", "state", "score", "reason"}


class RulesError(ValueError):
    """A rule set was refused; the message names the file, the line and the reason."""


@dataclass(frozen=True)
class RuleHit:
    id: str
    action: str
    state: str
    reason: str
    score: float | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    when: str
    action: str
    state: str
    condition: Compiled
    score: float | None = None
    reason: str | None = None
    #: The condition over whole columns (`vector`), from the same parse as `condition`.
    columns: ColumnFn | None = None

    def explain(self, row: Any, tx: Mapping[str, Any]) -> str:
        if not self.reason:
            return self.description
        values: dict[str, Any] = {}
        for _, name, _, _ in string.Formatter().parse(self.reason):
            if name is None:
                continue
            if name in _FEATURE_INDEX:
                value = float(row[_FEATURE_INDEX[name]])
                values[name] = 0.0 if math.isnan(value) else value
            else:
                values[name] = tx.get(name.removeprefix("tx_"), "")
        try:
            return self.reason.format(**values)
        except (ValueError, KeyError, IndexError):
            return self.reason


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...] = ()
    lists: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def evaluate_row(self, row: Any, tx: Mapping[str, Any], score: float = math.nan) -> list[RuleHit]:
        """Every rule whose condition holds for this transaction (all states), in file order."""
        context = (row, tx, score)
        hits = []
        for rule in self.rules:
            if rule.condition(context):
                hits.append(RuleHit(rule.id, rule.action, rule.state, rule.explain(row, tx), rule.score))
        return hits

    def evaluate_frame(self, frame: Frame) -> npt.NDArray[np.bool_]:
        """Whether each rule's condition holds on each row (rows x rules, file order): `evaluate_row` over
        whole columns at once, for backtests (equal row by row: `tests/unit/test_rules_vector.py`)."""
        fired = np.zeros((frame.rows, len(self.rules)), dtype=bool)
        for j, rule in enumerate(self.rules):
            columns = rule.columns or compile_rule_condition(rule.when, self.lists).columns
            fired[:, j] = columns(frame)
        return fired


def _parse_list(text: str) -> frozenset[str]:
    values = []
    for line in text.splitlines():
        value = line.split("#", 1)[0].strip()
        if value:
            values.append(value)
    return frozenset(values)


def _line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def read_rule_files(directory: Path) -> dict[str, str]:
    """The files of a rules folder as relative path -> text (`default.yaml`, `lists/deny_bins.txt`)."""
    if not directory.is_dir():
        raise RulesError(f"{directory}: no such rules directory")
    files: dict[str, str] = {}
    for path in [*directory.glob("lists/*.txt"), *directory.glob("*.y*ml")]:
        try:
            files[path.relative_to(directory).as_posix()] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise RulesError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return files


def load_rules(directory: Path) -> RuleSet:
    """Load and compile every rule and list under `directory`, or raise RulesError (nothing half-loaded)."""
    return load_rule_files(read_rule_files(directory), origin=directory)


def rule_files_digest(files: Mapping[str, str]) -> str:
    """The SHA-256 (hex) of a rule set's files: lists, then rule files, each by name, as `load_rules` hashes
    a folder. Its first 12 digits are the `version` a loaded set reports."""
    digest = hashlib.sha256()
    for name in sorted(n for n in files if n.startswith("lists/")):
        digest.update(name.removeprefix("lists/").encode() + b"\0" + files[name].encode())
    for name in sorted(n for n in files if not n.startswith("lists/")):
        digest.update(name.encode() + b"\0" + files[name].encode())
    return digest.hexdigest()


def load_rule_files(files: Mapping[str, str], origin: Path | str = "") -> RuleSet:
    """Compile a rule set given as relative path -> text (as `read_rule_files` reads a folder, or as a
    stored version holds it); errors name `origin/<path>`, the line and the reason."""
    for name in files:
        if not _FILE_NAME.fullmatch(name):
            raise RulesError(f"{Path(origin) / name}: not a rules file (`<name>.yaml` or `lists/<name>.txt`)")
    lists: dict[str, frozenset[str]] = {}
    for name in sorted(n for n in files if n.startswith("lists/")):
        lists[Path(name).stem] = _parse_list(files[name])
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for name in sorted(n for n in files if not n.startswith("lists/")):
        path = Path(origin) / name
        for rule in _load_file(path, files[name], lists):
            if rule.id in seen:
                raise RulesError(f"{path}: rule id {rule.id!r} is already defined in {seen[rule.id]}")
            seen[rule.id] = str(path)
            rules.append(rule)
    return RuleSet(version=rule_files_digest(files)[:12], rules=tuple(rules), lists=lists)


def _load_file(path: Path, text: str, lists: Mapping[str, frozenset[str]]) -> list[Rule]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return []
        # Constructing refuses every tag but plain YAML types (`!!python/...` raises here; nothing runs).
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RulesError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulesError(f"{path}:{_line_of(root)}: expected a mapping with a `rules:` list")
    rules_node = next(v for k, v in root.value if k.value == "rules")
    out = []
    for item, node in zip(data["rules"], rules_node.value, strict=True):
        out.append(_load_rule(path, _line_of(node), item, node, lists))
    return out


def _load_rule(path: Path, line: int, item: Any, node: yaml.Node, lists: Mapping[str, frozenset[str]]) -> Rule:
    where = f"{path}:{line}"
    if not isinstance(item, dict):
        raise RulesError(f"{where}: each rule must be a mapping")
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    for key in ("id", "when", "action", "state"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise RulesError(f"{where}: `{key}` is required (a non-empty string)")
    rule_id = item["id"]
    where = f"{where} (rule {rule_id})"
    if item["action"] not in ACTIONS:
        raise RulesError(f"{where}: action must be one of {', '.join(ACTIONS)}, not {item['action']!r}")
    if item["state"] not in STATES:
        raise RulesError(f"{where}: state must be one of {', '.join(STATES)}, not {item['state']!r}")
    score = item.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1):
        raise RulesError(f"{where}: score must be a number between 0 and 1")
    when_line = line
    for key_node, value_node in node.value:
        if key_node.value == "when":
            when_line = _line_of(value_node)
    try:
        condition = compile_rule_condition(item["when"], lists)
    except RuleSyntaxError as e:
        raise RulesError(f"{path}:{when_line + e.line - 1} (rule {rule_id}): `when` {e}") from e
    return Rule(
        id=rule_id, description=str(item.get("description", "")), when=item["when"], action=item["action"],
        state=item["state"], condition=condition.row, score=None if score is None else float(score),
        reason=item.get("reason"), columns=condition.columns,
    )  # fmt: skip


def empty_rules() -> RuleSet:
    return RuleSet(version="none")


def row_of(features: Mapping[str, float]) -> np.ndarray:
    """A feature row from a name → value mapping (tests, the rule CLI); absent names are NaN."""
    return np.asarray([features.get(name, math.nan) for name in FEATURE_NAMES], dtype=np.float64)
