"""One backtest from options to written report (the command only parses and shows progress)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.backtest.history import BacktestError, History, read_database, read_file, window_ms
from training.backtest.replay import Step, replay, resolve_model
from training.evaluate import CostPolicy


@dataclass
class BacktestConfig:
    rules_dir: Path
    since: datetime
    until: datetime
    out: Path
    #: A model version, "current" or "none" (rules only).
    model: str = "current"
    models_dir: Path = Path("models")
    #: The rules being served today (the comparison when the history holds no verdicts).
    current_rules_dir: Path = Path("rules")
    data: Path | None = None
    labels: Path | None = None
    from_db: bool = False
    label_delay_days: float = 7.0
    processes: int | None = None
    policy: CostPolicy = field(default_factory=CostPolicy)
    plots: bool = True


def _iso(t: datetime) -> str:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")


def load_history(config: BacktestConfig, settings: Any = None) -> History:
    if config.from_db == (config.data is not None):
        raise BacktestError("give --data FILE or --from-db (one of them)")
    if config.from_db:
        from pipeline.settings import get_settings

        return read_database(settings or get_settings())
    assert config.data is not None
    return read_file(config.data, labels=config.labels, label_delay_days=config.label_delay_days)


def run_backtest(
    config: BacktestConfig, *, settings: Any = None, step: Step = lambda _: None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Read, replay, compare, write: returns the summary and the paths written."""
    from pipeline.rules import RulesError, load_rules
    from training.backtest.metrics import summarize
    from training.backtest.report import write

    window = window_ms(config.since, config.until)
    try:
        candidate_rules = load_rules(config.rules_dir)
        current_rules = load_rules(config.current_rules_dir)
    except RulesError as e:
        raise BacktestError(str(e)) from e
    candidate_model = resolve_model(config.models_dir, config.model)
    current_model = resolve_model(config.models_dir, "current")
    step("reading the history")
    history = load_history(config, settings)
    result = replay(
        history,
        window=window,
        candidate=(candidate_rules, candidate_model),
        baseline=(current_rules, current_model),
        processes=config.processes,
        step=step,
    )
    if candidate_model is None and config.model != "none":
        result.notes.append(f"no current model in {config.models_dir}: rules alone decide")
    step("report")
    context = {
        "source": history.source,
        "since": _iso(config.since),
        "until": _iso(config.until),
        "candidate_rules": {"dir": str(config.rules_dir), "version": candidate_rules.version},
        "candidate_model": result.candidate.model_version,
        "current_rules": {"dir": str(config.current_rules_dir), "version": current_rules.version},
        "current_model": None if current_model is None else current_model.version,
    }
    summary = summarize(result, config.policy, context=context)
    return summary, write(summary, config.out, plots=config.plots)
