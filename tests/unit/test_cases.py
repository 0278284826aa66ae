"""Review cases' pure core: priority, SLA age, the note check and the label a resolution produces."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.cases import (
    NOTE_MAX_CHARS,
    age_seconds,
    amount_weight,
    case_priority,
    check_note,
    label_source,
    opens_case,
    resolution_label,
)
from tests.fixtures.factories import luhn_complete

T0 = datetime(2025, 11, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("score", "amount", "priority"),
    [
        (1.0, 10_000.0, 100),  # full weight from 9,999
        (1.0, 1_000_000.0, 100),
        (0.8, 99.0, 40),  # log10(100) / 4 = 0.5
        (0.9, 1.0, 22),  # card-testing probe: floor weight 0.25
        (0.9, 0.0, 22),
        (0.0, 50_000.0, 0),
        (0.6, None, 30),  # unknown amount: weight 0.5
        (0.5, 999.0, 38),  # log10(1000) / 4 = 0.75
    ],
)
def test_priority_weights_score_by_amount(score: float, amount: float | None, priority: int) -> None:
    assert case_priority(score=score, amount=amount) == priority


def test_priority_is_monotonic_in_score_and_amount() -> None:
    amounts = [0.5, 5.0, 50.0, 500.0, 5_000.0, 50_000.0]
    assert [amount_weight(a) for a in amounts] == sorted(amount_weight(a) for a in amounts)
    scores = [i / 10 for i in range(11)]
    assert [case_priority(score=s, amount=200.0) for s in scores] == sorted(
        case_priority(score=s, amount=200.0) for s in scores
    )


@pytest.mark.parametrize(("decision", "opens"), [("review", True), ("challenge", True), ("approve", False),
                                                 ("decline", False)])  # fmt: skip
def test_review_and_challenge_open_a_case(decision: str, opens: bool) -> None:
    assert opens_case(decision) is opens


def test_age_runs_until_resolution() -> None:
    assert age_seconds(created_at=T0, resolved_at=None, now=T0 + timedelta(minutes=5)) == 300.0
    assert age_seconds(created_at=T0, resolved_at=T0 + timedelta(seconds=42), now=T0 + timedelta(days=1)) == 42.0


@pytest.mark.parametrize(
    ("note", "error"),
    [
        ("x" * (NOTE_MAX_CHARS + 1), "longer"),
        ("called the customer\x00", "control"),
        ("card " + luhn_complete("411111111111111") + " confirmed", "PAN"),
    ],
)
def test_note_refused(note: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        check_note(note)


def test_note_keeps_line_breaks() -> None:
    assert check_note("customer confirmed\r\nby phone\tat 10:02") == "customer confirmed\r\nby phone\tat 10:02"
    assert check_note(None) is None


@pytest.mark.parametrize(
    ("resolution", "label", "is_fraud"),
    [("fraud", "confirmed_fraud", True), ("legitimate", "confirmed_legitimate", False)],
)
def test_resolution_label_is_a_function_of_the_case(resolution: str, label: str, is_fraud: bool) -> None:
    def build() -> object:
        return resolution_label(case_id=7, transaction_id="tx-1", resolution=resolution,  # type: ignore[arg-type]
                                resolved_at=T0, assignee="alice", card_id="card-1", merchant_id="m-1")  # fmt: skip

    first = build()
    assert first == build()
    assert first.model_dump(mode="json") == {  # type: ignore[attr-defined]
        "transaction_id": "tx-1", "label": label, "reported_at": "2025-11-02T09:00:00Z",
        "card_id": "card-1", "merchant_id": "m-1", "source": "case:7:alice",
    }  # fmt: skip
    assert first.is_fraud is is_fraud  # type: ignore[attr-defined]


def test_label_source_fits_the_label() -> None:
    assert len(label_source(12345678901, "a" * 64)) == 64


def test_importing_the_core_loads_no_framework() -> None:
    code = (
        "import sys, pipeline.cases; print(sorted({'faust', 'fastapi', 'sqlalchemy', 'aiokafka'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
