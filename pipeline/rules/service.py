"""Rule sets as versions: what a version holds, the state edits that make the next one, the promotion steps,
the release record the workers follow, and the difference between two versions.

Pure: no database and no Kafka (`pipeline.db.rule_sets` stores versions, `pipeline.rules.changes` runs a
change end to end). A version's content is its files as relative path -> text (`default.yaml`,
`lists/deny_bins.txt`), the same mapping a rules folder reads into, so its hash is the `rules_version` a
folder with those files reports. A state edit rewrites only the `state:` value of the rules it changes, so a
promotion's version differs from its parent by exactly that word (comments and layout stay).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from pipeline.pan import contains_pan
from pipeline.rules.engine import STATES, RulesError, RuleSet, load_rule_files, rule_files_digest

RuleState = Literal["audit", "shadow", "enforce"]
#: The largest content a version may hold (UTF-8 bytes of every file): it travels as one Kafka record, and
#: brokers accept 1 MB by default.
MAX_CONTENT_BYTES = 900_000
REASON_MAX_CHARS = 1000
_RANK = {state: i for i, state in enumerate(STATES)}


class RulesChangeError(ValueError):
    """A rules change was refused; the message says why (the API maps each kind to its status)."""


class UnknownRule(RulesChangeError):
    pass


class UnknownVersion(RulesChangeError):
    pass


class PromotionRefused(RulesChangeError):
    """Not a permitted state step, or nothing would change."""


class BacktestRequired(RulesChangeError):
    """Promotion to enforce needs a recorded backtest of the candidate first (`rules.require_backtest_days`)."""


class ChangeConflict(RulesChangeError):
    """Another change was stored first; read the serving version again and retry."""


class RuleSetSummary(BaseModel):
    """A stored version without its files."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(ge=1)
    content_hash: str = Field(description="SHA-256 of the files; its first 12 digits are a folder's rules_version")
    created_at: datetime
    created_by: str
    reason: str
    parent: int | None = None
    serving: bool = False

    @computed_field(description="The rules_version verdicts carry while this version serves")  # type: ignore[prop-decorator]
    @property
    def served_as(self) -> str:
        return served_as(self.version, self.content_hash)


class RuleSetVersion(RuleSetSummary):
    files: dict[str, str]


def served_as(version: int, content_hash: str) -> str:
    """The `rules_version` verdicts carry for a stored version: its number and its content."""
    return f"v{version}-{content_hash[:12]}"


def check_reason(reason: str) -> str:
    """Every change says why: a short free text, never a card number."""
    text = reason.strip()
    if not text:
        raise RulesChangeError("a reason is required (why this change)")
    if len(text) > REASON_MAX_CHARS:
        raise RulesChangeError(f"the reason is longer than {REASON_MAX_CHARS} characters")
    if any((ord(c) < 0x20 and c not in "\t\n") or 0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise RulesChangeError("the reason contains a control character")
    if contains_pan(text):
        raise RulesChangeError("the reason must not contain a card number")
    return text


def validate_files(files: Mapping[str, str], origin: str = "") -> RuleSet:
    """The compiled set, or RulesError with file, line and reason (as a folder's reload reports it)."""
    size = sum(len(name.encode()) + len(text.encode()) for name, text in files.items())
    if size > MAX_CONTENT_BYTES:
        raise RulesError(f"the rule set is {size:,} bytes; at most {MAX_CONTENT_BYTES:,} (one Kafka record)")
    for name, text in files.items():
        if "\x00" in name + text or any(0xD800 <= ord(c) <= 0xDFFF for c in name + text):
            raise RulesError(f"{name!a}: not text (a NUL character or a lone surrogate)")
        if contains_pan(text):
            raise RulesError(f"{name}: holds what looks like a card number (PAN); lists hold card ids, never PANs")
    if not any(not name.startswith("lists/") for name in files):
        raise RulesError("no rule file: a rule set needs at least one `<name>.yaml`")
    return load_rule_files(files, origin)


def content_hash(files: Mapping[str, str]) -> str:
    return rule_files_digest(files)


def rule_states(files: Mapping[str, str]) -> dict[str, str]:
    """Rule id -> state, in file order."""
    return {rule.id: rule.state for rule in validate_files(files).rules}


def _state_edits(text: str, decide: Callable[[str, str], str | None]) -> str:
    """`text` with the `state:` value of each rule replaced by `decide(id, state)` when that is not None."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return text
    rules_node = next(v for k, v in root.value if k.value == "rules")
    edits: list[tuple[int, int, str]] = []
    for node in rules_node.value:
        fields = {k.value: v for k, v in node.value}
        new = decide(fields["id"].value, fields["state"].value)
        if new is not None and new != fields["state"].value:
            edits.append((fields["state"].start_mark.index, fields["state"].end_mark.index, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def with_states(files: Mapping[str, str], decide: Callable[[str, str], str | None]) -> dict[str, str]:
    """A copy of a valid rule set with the states `decide(id, state)` gives (None: unchanged)."""
    validate_files(files)
    out = {name: text if name.startswith("lists/") else _state_edits(text, decide) for name, text in files.items()}
    validate_files(out)
    return out


def force_state(files: Mapping[str, str], state: RuleState) -> dict[str, str]:
    """Every rule in `state` (a push lands its rules in audit: recorded, never acting, until promoted)."""
    return with_states(files, lambda _id, _state: state)


def check_step(rule_id: str, current: str, target: str) -> None:
    """Up one step at a time (audit -> shadow -> enforce), so a rule is watched as "would have" before it
    acts; down any number at once (enforce -> audit stops a misbehaving rule in one change)."""
    if target not in _RANK:
        raise PromotionRefused(f"state must be one of {', '.join(STATES)}, not {target!r}")
    if current == target:
        raise PromotionRefused(f"rule {rule_id!r} is already in {target}")
    if _RANK[target] > _RANK[current] + 1:
        raise PromotionRefused(
            f"rule {rule_id!r} is in {current}: promote one step at a time ({current} -> {STATES[_RANK[current] + 1]})"
        )


def promoted(files: Mapping[str, str], rule_id: str, target: str) -> dict[str, str]:
    """The content of the version that moves one rule to `target`, checked as a permitted step."""
    states = rule_states(files)
    if rule_id not in states:
        raise UnknownRule(f"no rule {rule_id!r} in this version (rules: {', '.join(states) or 'none'})")
    check_step(rule_id, states[rule_id], target)
    return with_states(files, lambda id_, _state: target if id_ == rule_id else None)


# --- the release record on the rules topic ----------------------------------------------------------------


def encode_release(version: RuleSetVersion) -> bytes:
    return orjson.dumps(version.model_dump(mode="json", exclude={"serving", "served_as"}))


def decode_release(value: bytes) -> RuleSetVersion:
    """A release read from the topic; RulesError when it is not one (a worker then keeps what it serves)."""
    try:
        release = RuleSetVersion.model_validate_json(value)
    except ValidationError as e:
        raise RulesError(f"not a rules release: {e.errors()[0]['msg']}") from e
    if content_hash(release.files) != release.content_hash:
        raise RulesError(f"release v{release.version}: its files do not match its content hash")
    return release


# --- differences ------------------------------------------------------------------------------------------


def _rule_fields(files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(n for n in files if not n.startswith("lists/")):
        data = yaml.safe_load(files[name]) or {}
        for item in data.get("rules", []):
            out[item["id"]] = {**item, "file": name}
    return out


def _list_values(text: str) -> set[str]:
    return {v for line in text.splitlines() if (v := line.split("#", 1)[0].strip())}


def diff_files(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, Any]:
    """What changes from `a` to `b`: rules added, removed and changed (field by field), list values added and
    removed (counts: lists may hold thousands), and a unified diff of the rule files."""
    ra, rb = _rule_fields(a), _rule_fields(b)
    changed = {
        rule_id: {k: [ra[rule_id].get(k), rb[rule_id].get(k)] for k in sorted(ra[rule_id].keys() | rb[rule_id].keys())
                  if ra[rule_id].get(k) != rb[rule_id].get(k)}
        for rule_id in ra.keys() & rb.keys()
        if ra[rule_id] != rb[rule_id]
    }  # fmt: skip
    lists: dict[str, dict[str, int]] = {}
    for name in sorted(n for n in a.keys() | b.keys() if n.startswith("lists/")):
        va, vb = _list_values(a.get(name, "")), _list_values(b.get(name, ""))
        if va != vb:
            lists[name.removeprefix("lists/").removesuffix(".txt")] = {"added": len(vb - va), "removed": len(va - vb)}
    text: list[str] = []
    for name in sorted(n for n in a.keys() | b.keys() if not n.startswith("lists/")):
        text.extend(
            difflib.unified_diff(
                a.get(name, "").splitlines(), b.get(name, "").splitlines(), f"a/{name}", f"b/{name}", lineterm=""
            )
        )
    return {
        "added": sorted(rb.keys() - ra.keys()),
        "removed": sorted(ra.keys() - rb.keys()),
        "changed": dict(sorted(changed.items())),
        "lists": lists,
        "unified": "\n".join(text),
    }
