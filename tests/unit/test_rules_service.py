"""Rule-set versions as data: state edits touch only the state word, promotion steps, releases, diffs, and the
worker's choice between its files and the releases it follows (a release feed stands in for the topic)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.rules import RulesError, load_rules
from pipeline.rules.engine import read_rule_files
from pipeline.rules.follow import ServingRules
from pipeline.rules.service import (
    PromotionRefused,
    RulesChangeError,
    RuleSetVersion,
    UnknownRule,
    check_reason,
    check_step,
    content_hash,
    decode_release,
    diff_files,
    encode_release,
    force_state,
    promoted,
    rule_states,
    validate_files,
)
from pipeline.rules.watch import RulesWatcher

RULES = """\
rules:
  # a comment that must survive every edit
  - id: big-amount
    description: Large amount
    when: tx.amount > 5000
    action: review
    state: "enforce"
    reason: big
  - {id: odd-merchant, when: tx.merchant_id == "m-odd", action: decline, state: shadow}
"""
FILES = {"main.yaml": RULES, "lists/deny_cards.txt": "card-1\n# a comment\ncard-2\n"}


def release(version: int, files: dict[str, str], reason: str = "test") -> bytes:
    return encode_release(
        RuleSetVersion(version=version, content_hash=content_hash(files), created_at=datetime.now(UTC),
                       created_by="alice", reason=reason, files=files)
    )  # fmt: skip


def test_the_content_hash_is_the_version_a_folder_with_the_same_files_reports(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert read_rule_files(tmp_path) == FILES
    assert load_rules(tmp_path).version == content_hash(FILES)[:12] == validate_files(FILES).version


def test_forcing_audit_changes_only_the_state_words() -> None:
    forced = force_state(FILES, "audit")
    assert rule_states(forced) == {"big-amount": "audit", "odd-merchant": "audit"}
    assert forced["lists/deny_cards.txt"] == FILES["lists/deny_cards.txt"]
    assert forced["main.yaml"] == RULES.replace('state: "enforce"', "state: audit").replace(
        "state: shadow}", "state: audit}"
    )


@pytest.mark.parametrize(
    ("current", "target", "refused"),
    [
        ("audit", "shadow", False), ("shadow", "enforce", False), ("enforce", "shadow", False),
        ("enforce", "audit", False), ("shadow", "audit", False), ("audit", "enforce", True),
        ("shadow", "shadow", True), ("audit", "live", True),
    ],
)  # fmt: skip
def test_promotion_goes_up_one_step_at_a_time_and_down_at_once(current: str, target: str, refused: bool) -> None:
    if refused:
        with pytest.raises(PromotionRefused):
            check_step("r", current, target)
    else:
        check_step("r", current, target)


def test_a_promotion_differs_from_its_parent_only_in_that_rule_state() -> None:
    after = promoted(FILES, "odd-merchant", "enforce")
    assert rule_states(after) == {"big-amount": "enforce", "odd-merchant": "enforce"}
    diff = diff_files(FILES, after)
    assert diff["changed"] == {"odd-merchant": {"state": ["shadow", "enforce"]}}
    assert diff["added"] == diff["removed"] == [] and diff["lists"] == {}
    with pytest.raises(UnknownRule):
        promoted(FILES, "no-such-rule", "shadow")


def test_diff_reports_added_rules_and_list_changes() -> None:
    after = {**FILES, "extra.yaml": "rules:\n  - {id: x, when: amount > 1, action: review, state: audit}\n",
             "lists/deny_cards.txt": "card-2\ncard-3\ncard-4\n"}  # fmt: skip
    diff = diff_files(FILES, after)
    assert diff["added"] == ["x"] and diff["lists"] == {"deny_cards": {"added": 2, "removed": 1}}
    assert "+++ b/extra.yaml" in diff["unified"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"main.yaml": "rules:\n  - id: a\n    when: amount >\n    action: review\n    state: audit\n"}, "main.yaml:3"),
        ({"../main.yaml": RULES}, "not a rules file"),
        ({"lists/deny.txt": "x\n"}, "no rule file"),
        ({"main.yaml": RULES.replace("review", "maybe")}, "action must be one of"),
        ({**FILES, "lists/deny_cards.txt": "4111111111111111\n"}, "looks like a card number"),
        ({**FILES, "lists/deny_cards.txt": "card-1\x00\n"}, "not text"),
    ],
)
def test_a_refused_rule_set_names_file_line_and_reason(files: dict[str, str], message: str) -> None:
    with pytest.raises(RulesError, match=message):
        validate_files(files)


def test_a_reason_is_required_and_never_a_card_number() -> None:
    assert check_reason("  tune  ") == "tune"
    for bad in ("", "   ", "customer 4111111111111111 complained", "nul \x00 byte"):
        with pytest.raises(RulesChangeError):
            check_reason(bad)


def test_a_release_round_trips_and_a_tampered_one_is_refused() -> None:
    value = release(3, FILES)
    assert decode_release(value).files == FILES
    with pytest.raises(RulesError, match="content hash"):
        decode_release(value.replace(b"card-1", b"card-9"))
    with pytest.raises(RulesError, match="not a rules release"):
        decode_release(b"{}")


class Feed:
    def __init__(self, *values: bytes) -> None:
        self.pending = list(values)

    def catch_up(self, timeout_s: float) -> list[bytes]:
        return self.poll()

    def poll(self) -> list[bytes]:
        out, self.pending = self.pending, []
        return out


def test_the_worker_serves_its_files_until_a_release_then_only_releases(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(RULES)
    feed = Feed()
    serving = ServingRules(RulesWatcher(tmp_path), feed)
    assert serving.rules.version == content_hash({"main.yaml": RULES})[:12] and serving.release is None
    promoted_files = promoted(FILES, "odd-merchant", "enforce")
    feed.pending.append(release(2, promoted_files))
    new = serving.maybe_reload()
    assert new is not None and new.version == f"v2-{content_hash(promoted_files)[:12]}"
    assert {r.id: r.state for r in new.rules}["odd-merchant"] == "enforce"
    (tmp_path / "main.yaml").write_text(RULES.replace("5000", "6000"))  # files no longer read
    assert serving.maybe_reload() is None


def test_a_bad_or_older_release_keeps_the_previous_set_serving(caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed(release(5, FILES))
    serving = ServingRules(None, feed)
    assert serving.release == 5
    broken = {"main.yaml": RULES.replace("tx.amount > 5000", "tx.amount >")}
    feed.pending += [release(4, force_state(FILES, "audit")), release(6, broken), b"not json"]
    assert serving.maybe_reload() is None
    assert serving.release == 5 and serving.rules.version.startswith("v5-")
    feed.pending.append(release(6, broken))  # the same refused release again: logged once
    serving.maybe_reload()
    assert sum("rules v6 refused" in r.getMessage() for r in caplog.records) == 1


def test_topic_only_serves_no_rules_until_a_release() -> None:
    feed = Feed()
    serving = ServingRules(None, feed)
    assert serving.rules.version == "none" and serving.rules.rules == ()
    feed.pending.append(release(1, FILES))
    assert serving.maybe_reload() is not None and len(serving.rules.rules) == 2
