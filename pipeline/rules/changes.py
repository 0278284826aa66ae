"""A rules change end to end, the same from the CLI and the API: compute the new version, store it with its
audit entry (one transaction, pipeline.db.rule_sets), then publish it to the workers (pipeline.rules.publish).

Every change stores a new version, rollbacks included (a rollback to v3 stores v9 with v3's files), so version
numbers only grow and the workers only move forward. A push lands every rule in `audit` unless asked to keep
the states written in the files; a promotion moves one rule one state up (or any number down). With
`rules.require_backtest_days` set, promotion to enforce needs a recorded backtest of the exact files it would
serve (`riskstream backtest --rules-version V --enforce RULE --record`): a backtest replays months of history
through the feature code in several processes, too long for an API call, so it runs beforehand and the
promotion checks its record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from pipeline.db.audit import list_audit_entries, record_audit_entry
from pipeline.db.rule_sets import get_rule_set, serving_rule_set, store_rule_set
from pipeline.rules.publish import publish_release
from pipeline.rules.service import (
    BacktestRequired,
    RuleSetVersion,
    UnknownVersion,
    check_reason,
    content_hash,
    force_state,
    promoted,
    rule_states,
    validate_files,
)
from pipeline.settings import Settings

BACKTEST_KIND = "rules.backtest"


@dataclass
class RulesChanges:
    settings: Settings
    sessions: Callable[[], Session]
    #: Called with each stored version; default: publish it to the rules topic.
    publish: Callable[[RuleSetVersion], None] | None = None

    def _publish(self, version: RuleSetVersion) -> None:
        (self.publish or (lambda v: publish_release(self.settings, v)))(version)

    def push(self, files: Mapping[str, str], *, actor: str, reason: str, keep_states: bool = False) -> RuleSetVersion:
        """Store and serve a new rule set (refused whole, with file, line and reason, if it does not load)."""
        reason = check_reason(reason)
        validate_files(files)
        content = dict(files) if keep_states else force_state(files, "audit")
        with self.sessions() as session:
            serving = serving_rule_set(session=session)
            details: dict[str, Any] = {"keep_states": keep_states, "states": rule_states(content)}
            if serving is not None:
                details["rules_added"] = sorted(details["states"].keys() - rule_states(serving.files).keys())
            version = store_rule_set(
                session=session, files=content, content_hash=content_hash(content), actor=actor, reason=reason,
                kind="rules.push", details=details,
            )  # fmt: skip
        self._publish(version)
        return version

    def promote(self, rule_id: str, *, to: str, actor: str, reason: str, now: datetime | None = None) -> RuleSetVersion:
        """A new version differing from the serving one only in `rule_id`'s state."""
        reason = check_reason(reason)
        with self.sessions() as session:
            serving = self._serving(session)
            before = rule_states(serving.files).get(rule_id)
            content = promoted(serving.files, rule_id, to)
            digest = content_hash(content)
            if to == "enforce":
                self._require_backtest(session, digest, rule_id, serving.version, now or datetime.now(UTC))
            version = store_rule_set(
                session=session, files=content, content_hash=digest, actor=actor, reason=reason,
                kind="rules.promote", subject=rule_id, made_from=serving.version,
                details={"rule_id": rule_id, "from_state": before, "to_state": to},
            )  # fmt: skip
        self._publish(version)
        return version

    def rollback(self, target: int, *, actor: str, reason: str) -> RuleSetVersion:
        """A new version with the files of version `target`."""
        reason = check_reason(reason)
        with self.sessions() as session:
            serving = self._serving(session)
            old = get_rule_set(session=session, version=target)
            if old is None:
                raise UnknownVersion(f"no rule set version {target}")
            version = store_rule_set(
                session=session, files=old.files, content_hash=old.content_hash, actor=actor, reason=reason,
                kind="rules.rollback", subject=f"v{target}", made_from=serving.version,
                details={"rolled_back_to": target, "rolled_back_from": serving.version},
            )  # fmt: skip
        self._publish(version)
        return version

    def publish_serving(self) -> RuleSetVersion:
        """Send the serving version again (after a publish failed); workers ignore one they already serve."""
        with self.sessions() as session:
            serving = self._serving(session)
        self._publish(serving)
        return serving

    @staticmethod
    def _serving(session: Session) -> RuleSetVersion:
        serving = serving_rule_set(session=session)
        if serving is None:
            raise UnknownVersion("no rule set stored yet: push one first (`riskstream rules push DIR`)")
        return serving

    def _require_backtest(self, session: Session, digest: str, rule_id: str, made_from: int, now: datetime) -> None:
        days = self.settings.rules.require_backtest_days
        if days <= 0:
            return
        for entry in list_audit_entries(session=session, kind=BACKTEST_KIND, subject=digest,
                                        since=now - timedelta(days=days)):  # fmt: skip
            if float(entry.details.get("days", 0)) >= days:
                return
        raise BacktestRequired(
            f"promoting {rule_id!r} to enforce needs a backtest of the rule set it makes (hash {digest[:12]}) over "
            f"at least {days} days, recorded within {days} days: run `riskstream backtest --rules-version "
            f"{made_from} --enforce {rule_id} --from-db --since <{days} days ago> --until <today> --record`"
        )


def record_backtest(
    *, session: Session, files: Mapping[str, str], since: datetime, until: datetime, actor: str,
    summary: Mapping[str, Any], rules_version: int | None = None,
) -> None:  # fmt: skip
    """Note that a backtest of `files` over [since, until) ran (the promotion check reads it)."""
    digest = content_hash(files)
    headline = {k: summary.get(k) for k in ("rows", "changed")}
    record_audit_entry(
        session=session, kind=BACKTEST_KIND, actor=actor, subject=digest,
        reason=f"backtest {since.date()} .. {until.date()}",
        from_version=None if rules_version is None else str(rules_version),
        details={"days": (until - since).total_seconds() / 86400, "since": since.isoformat(),
                 "until": until.isoformat(), "rules_version": rules_version, **headline,
                 "candidate": summary.get("candidate"), "served": summary.get("served"),
                 "rules": summary.get("rules")},
    )  # fmt: skip
