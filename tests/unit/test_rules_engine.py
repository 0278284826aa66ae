import logging
import shutil
import time
from pathlib import Path

import pytest

from pipeline.rules import RulesError, RulesWatcher, decide, load_rules, row_of

PROJECT_RULES = Path(__file__).resolve().parents[2] / "rules"


def write(directory: Path, text: str, name: str = "r.yaml") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


RULE = """rules:
  - id: small-burst
    description: test
    when: card_count_5m >= 3
    action: review
    state: {state}
"""


def test_the_shipped_default_rules_load(tmp_path: Path) -> None:
    rules = load_rules(PROJECT_RULES)
    assert len(rules.rules) >= 8
    assert {r.state for r in rules.rules} == {"audit", "shadow", "enforce"}
    hits = rules.evaluate_row(row_of({"ip_distinct_cards_1h": 12, "amount": 2.0}), {"country": "FR"})
    assert [h.id for h in hits] == ["card-testing-ip"]
    assert hits[0].reason == "12 cards on this IP in 1 h"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "rules:\n  - id: a\n    when: amount >\n    action: review\n    state: enforce\n",
            "r.yaml:3 (rule a)",
        ),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    action: block\n    state: enforce\n",
            "action must be one of",
        ),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    action: review\n    state: live\n",
            "state must be one of",
        ),
        ("rules:\n  - id: a\n    action: review\n    state: enforce\n", "`when` is required"),
        (
            "rules:\n  - id: a\n    when: x > 1\n    action: review\n    state: enforce\n    colour: red\n",
            "unknown key",
        ),
        (
            "rules:\n  - id: a\n    when: amount > 1\n    action: review\n    state: enforce\n    score: 2\n",
            "between 0 and 1",
        ),
        ("rules: [\n", "not valid YAML"),
        (  # a YAML tag that would construct a Python object: refused, nothing runs
            "rules:\n  - id: a\n    when: !!python/object/apply:os.system ['touch /tmp/pwned']\n    action: review\n"
            "    state: enforce\n",
            "r.yaml:3: not valid YAML",
        ),
        ("just text\n", "expected a mapping"),
    ],
)
def test_invalid_rule_files_are_refused_with_file_line_and_reason(tmp_path: Path, text: str, fragment: str) -> None:
    write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    assert "r.yaml" in str(info.value) and fragment in str(info.value)


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    write(tmp_path, RULE.format(state="enforce"), "a.yaml")
    write(tmp_path, RULE.format(state="audit"), "b.yaml")
    with pytest.raises(RulesError, match="already defined"):
        load_rules(tmp_path)


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    write(tmp_path, RULE.format(state="enforce"))
    first = load_rules(tmp_path).version
    assert load_rules(tmp_path).version == first
    (tmp_path / "r.yaml").touch()
    assert load_rules(tmp_path).version == first  # same content, same version
    write(tmp_path, RULE.format(state="shadow"))
    assert load_rules(tmp_path).version != first


def test_hot_reload_swaps_good_sets_and_keeps_the_old_one_on_a_bad_edit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, RULE.format(state="enforce"))
    watcher = RulesWatcher(tmp_path)
    v1 = watcher.rules.version
    assert watcher.maybe_reload() is None  # nothing changed
    time.sleep(0.01)
    write(tmp_path, RULE.format(state="shadow"))
    assert watcher.maybe_reload() is not None and watcher.rules.version != v1
    v2 = watcher.rules.version
    time.sleep(0.01)
    write(tmp_path, RULE.format(state="enforce").replace("card_count_5m >= 3", "card_count_5m >="))
    with caplog.at_level(logging.ERROR, logger="riskstream.rules"):
        assert watcher.maybe_reload() is None
        assert watcher.maybe_reload() is None  # refused once, not re-logged at every poll
    assert watcher.rules.version == v2
    assert sum("rules refused" in r.message for r in caplog.records) == 1
    assert "r.yaml:4" in caplog.records[0].message


def test_lists_are_files_and_change_the_version(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_RULES, tmp_path / "rules")
    rules_dir = tmp_path / "rules"
    before = load_rules(rules_dir)
    (rules_dir / "lists" / "deny_cards.txt").write_text("# stolen\ncard-666  # reported 2026-11-01\n")
    after = load_rules(rules_dir)
    assert after.version != before.version
    hits = after.evaluate_row(row_of({}), {"card_id": "card-666"})
    result = decide(0.01, {"review": 0.5, "decline": 0.9}, hits)
    assert result.decision == "decline" and result.score == 1.0
    assert result.reasons[0]["code"] == "rule:deny-listed-card"
