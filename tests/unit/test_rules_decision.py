import pytest

from pipeline.rules import RuleHit, decide

T = {"review": 0.5, "decline": 0.9}


def hit(action: str, state: str = "enforce", score: float | None = None, rule: str = "r") -> RuleHit:
    return RuleHit(rule, action, state, f"{rule} fired", score)


@pytest.mark.parametrize(
    ("score", "hits", "expected"),
    [
        (0.1, [], "approve"),
        (0.6, [], "review"),
        (0.95, [], "decline"),
        (0.1, [hit("decline")], "decline"),  # enforced decline first
        (0.95, [hit("approve")], "approve"),  # then the allow list, over the model
        (0.1, [hit("decline"), hit("approve")], "decline"),  # deny beats allow
        (0.1, [hit("review")], "review"),  # review rules raise an approve
        (0.95, [hit("review")], "decline"),  # ...but never lower the model
        (0.6, [hit("challenge")], "challenge"),  # challenge outranks review
        (0.1, [hit("decline", "shadow")], "approve"),  # shadow never acts
        (0.1, [hit("decline", "audit")], "approve"),  # audit never acts
    ],
)
def test_precedence(score: float, hits: list[RuleHit], expected: str) -> None:
    assert decide(score, T, hits).decision == expected


def test_score_override_of_an_enforced_rule_replaces_the_score() -> None:
    result = decide(0.2, T, [hit("review", score=0.95), hit("review", "shadow", score=0.99)])
    assert result.score == 0.95 and result.decision == "decline"


def test_shadow_hits_say_what_they_would_have_done_and_audit_hits_stay_silent() -> None:
    result = decide(0.1, T, [hit("decline", "shadow", rule="s"), hit("review", "audit", rule="a")])
    assert [r["code"] for r in result.reasons] == ["shadow:s"]
    assert "would decline" in result.reasons[0]["text"]


def test_flagged_verdicts_carry_the_rules_that_acted() -> None:
    result = decide(0.1, T, [hit("review", rule="burst"), hit("approve", "audit", rule="x")])
    assert result.decision == "review"
    assert [r["code"] for r in result.reasons] == ["rule:burst"]
