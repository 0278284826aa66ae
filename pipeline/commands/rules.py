"""`riskstream rules validate|push|promote|rollback|publish|list|show|diff` and `riskstream audit`.

Changes go to the configured database (the serving version and the audit trail) and then to the rules topic
the workers follow (pipeline.rules.changes); the actor is `--actor`, else $USER.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Reason = Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Who (default: $USER).")]


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "unknown"


def _fail(e: Exception, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
    raise typer.Exit(code)


def _changes() -> Any:
    from pipeline.db.engine import create_engine_from_settings, session_factory
    from pipeline.rules.changes import RulesChanges
    from pipeline.settings import get_settings

    settings = get_settings()
    return RulesChanges(settings, session_factory(create_engine_from_settings(settings)))


def _run(change: Any) -> Any:
    """Run a change; refusals exit 2, a database or Kafka failure 1."""
    from pipeline.db.engine import RiskstreamDbError
    from pipeline.rules import RulesError
    from pipeline.rules.publish import PublishError
    from pipeline.rules.service import RulesChangeError

    try:
        return change()
    except PublishError as e:
        _fail(RuntimeError(f"{e}; run `riskstream rules publish` once Kafka is reachable"))
    except (RulesError, RulesChangeError) as e:
        _fail(e, 2)
    except RiskstreamDbError as e:
        _fail(e)


def _done(version: Any, what: str) -> None:
    console.print(f"rules v{version.version} ({version.served_as}) serving: {what}", highlight=False)


def register(app: typer.Typer) -> None:
    rules = typer.Typer(help="Rule-set versions: validate, push, promote, roll back (README, Rules as a service).",
                        no_args_is_help=True)  # fmt: skip
    app.add_typer(rules, name="rules")

    @rules.command()
    def validate(directory: Annotated[Path, typer.Argument(help="A folder as rules/.")]) -> None:
        """Load a rules folder as a worker would; exit 2 with file, line and reason when it is refused."""
        from pipeline.rules import RulesError
        from pipeline.rules.engine import read_rule_files
        from pipeline.rules.service import validate_files

        try:
            loaded = validate_files(read_rule_files(directory), origin=str(directory))
        except RulesError as e:
            _fail(e, 2)
        states = ", ".join(f"{r.id} ({r.state})" for r in loaded.rules)
        console.print(f"{len(loaded.rules)} rules, {len(loaded.lists)} lists, version {loaded.version}: {states}")

    @rules.command()
    def push(
        directory: Annotated[Path, typer.Argument(help="A folder as rules/.")],
        reason: Reason,
        keep_states: Annotated[bool, typer.Option(help="Keep the files' states (default: every rule audit).")] = False,
        actor: ActorOption = None,
    ) -> None:
        """Store the folder as the next version and serve it: every rule in audit unless --keep-states."""
        from pipeline.rules import RulesError
        from pipeline.rules.engine import read_rule_files

        try:
            files = read_rule_files(directory)
        except RulesError as e:
            _fail(e, 2)
        version = _run(lambda: _changes().push(files, actor=_actor(actor), reason=reason, keep_states=keep_states))
        _done(version, f"pushed from {directory}")

    @rules.command()
    def promote(
        rule_id: Annotated[str, typer.Argument(help="The rule's id.")],
        to: Annotated[str, typer.Option("--to", help="audit | shadow | enforce")],
        reason: Reason,
        actor: ActorOption = None,
    ) -> None:
        """Move one rule to another state (up one step at a time, down at once) as a new version."""
        version = _run(lambda: _changes().promote(rule_id, to=to, actor=_actor(actor), reason=reason))
        _done(version, f"{rule_id} in {to}")

    @rules.command()
    def rollback(
        version: Annotated[int, typer.Argument(help="The version whose files serve again.")],
        reason: Reason,
        actor: ActorOption = None,
    ) -> None:
        """Serve an earlier version's files again, as a new version."""
        stored = _run(lambda: _changes().rollback(version, actor=_actor(actor), reason=reason))
        _done(stored, f"the files of v{version}")

    @rules.command()
    def publish() -> None:
        """Send the serving version to the rules topic again (after a change could not reach Kafka)."""
        _done(_run(lambda: _changes().publish_serving()), "published")

    @rules.command("list")
    def list_command(limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
        """Stored versions, newest first; the serving one is marked."""
        from pipeline.db.rule_sets import list_rule_sets

        changes = _changes()
        with changes.sessions() as session:
            versions = _run(lambda: list_rule_sets(session=session, limit=limit))
        table = Table("", "version", "served as", "created", "by", "parent", "reason")
        for v in versions:
            table.add_row("*" if v.serving else "", str(v.version), v.served_as, v.created_at.isoformat()[:19],
                          v.created_by, str(v.parent or ""), v.reason)  # fmt: skip
        console.print(table)

    def _version(session: Any, number: int) -> Any:
        from pipeline.db.rule_sets import get_rule_set

        found = _run(lambda: get_rule_set(session=session, version=number))
        if found is None:
            _fail(LookupError(f"no rule set version {number}"), 2)
        return found

    @rules.command()
    def show(
        version: Annotated[int, typer.Argument()],
        export: Annotated[Path | None, typer.Option(help="Write the version's files into this folder.")] = None,
    ) -> None:
        """A version: who, when, why, its rules and states (and its files with --export)."""
        from pipeline.rules.service import rule_states

        with _changes().sessions() as session:
            found = _version(session, version)
        console.print(f"v{found.version} ({found.served_as}){' serving' if found.serving else ''}, "
                      f"{found.created_at.isoformat()[:19]} by {found.created_by}, from v{found.parent}: "
                      f"{found.reason}", highlight=False)  # fmt: skip
        for rule_id, state in rule_states(found.files).items():
            console.print(f"  {rule_id:<32} {state}", highlight=False)
        if export is not None:
            for name, text in found.files.items():
                (export / name).parent.mkdir(parents=True, exist_ok=True)
                (export / name).write_text(text, encoding="utf-8")
            console.print(f"files written to {export}")

    @rules.command()
    def diff(a: Annotated[int, typer.Argument()], b: Annotated[int, typer.Argument()]) -> None:
        """What changes from version A to version B: rules, states, lists, and the rule files' lines."""
        from pipeline.rules.service import diff_files

        with _changes().sessions() as session:
            found = diff_files(_version(session, a).files, _version(session, b).files)
        console.print(f"added: {', '.join(found['added']) or '-'}; removed: {', '.join(found['removed']) or '-'}")
        for rule_id, fields in found["changed"].items():
            console.print(f"  {rule_id}: " + "; ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in fields.items()),
                          highlight=False)  # fmt: skip
        for name, counts in found["lists"].items():
            console.print(f"  list {name}: +{counts['added']} -{counts['removed']}")
        if found["unified"]:
            console.print(escape(found["unified"]), highlight=False)

    @app.command()
    def audit(
        since: Annotated[datetime | None, typer.Option(help="From this UTC time (default: 30 days ago).")] = None,
        kind: Annotated[str | None, typer.Option(help="e.g. rules.promote, or rules. for all rules changes")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    ) -> None:
        """The audit trail of rules and model changes: who, when, what, why."""
        from pipeline.db.audit import list_audit_entries

        start = since.replace(tzinfo=since.tzinfo or UTC) if since else datetime.now(UTC) - timedelta(days=30)
        with _changes().sessions() as session:
            entries = _run(lambda: list_audit_entries(session=session, kind=kind, since=start, limit=10_000))
        if as_json:
            for entry in entries:
                typer.echo(json.dumps(entry.model_dump(mode="json")))
            return
        table = Table("at", "actor", "kind", "subject", "from", "to", "reason")
        for e in entries:
            table.add_row(e.at.isoformat()[:19], e.actor, e.kind, e.subject[:24], e.from_version or "",
                          e.to_version or "", e.reason)  # fmt: skip
        console.print(table)
