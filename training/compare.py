"""Champion vs challenger on labelled outcomes, from the verdicts that carried both models' calls.

Every verdict scored with a challenger holds the champion's score and decision (which acted) and the
challenger's (`challenger: {version, score, decision}`, which did not). Joined with the labels, they give:
average precision of each model's scores; recall of each at the false-positive rate the champion's flags
actually had (the same legitimate traffic inconvenienced, so recall is comparable); the cost of each set of
decisions under `training.evaluate.CostPolicy`; and the decision agreement matrix. A transaction without a
label counts as legitimate (labels report fraud and its disputes), as in training and backtests.

Verdicts come from a JSON-lines file of the verdicts topic's values (e.g. `riskstream tail`) or from the
database, where the sink stores the challenger's call beside the champion's (revision 0004).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from pipeline.rules.decision import DECISIONS
from training.evaluate import CostPolicy, decision_cost, recall_at_fpr

FLAGS = ("review", "challenge", "decline")
_T = TypeVar("_T")


class CompareError(RuntimeError):
    """The comparison cannot be made; the message says why."""


@dataclass(frozen=True)
class Paired:
    """Verdicts scored by both models, as columns (one row per transaction, first verdict per id)."""

    transaction_ids: list[str]
    champion: str
    challenger: str
    champion_scores: npt.NDArray[np.float64]
    challenger_scores: npt.NDArray[np.float64]
    champion_decisions: npt.NDArray[np.str_]
    challenger_decisions: npt.NDArray[np.str_]
    amounts: npt.NDArray[np.float64]
    #: Verdicts in the window without a challenger (not compared) and with another pair of versions.
    skipped: int = 0


def _as_utc(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def pair_verdicts(verdicts: Iterable[dict[str, Any]], since: datetime, until: datetime | None) -> Paired:
    """The verdicts decided in [since, until) by event time that carry a challenger, for the most frequent
    (champion, challenger) pair; a comparison is between two models, not a mix of versions."""
    since, end = _as_utc(since), _as_utc(until) if until else None
    chosen: dict[str, dict[str, Any]] = {}
    skipped = 0
    for v in verdicts:
        when = datetime.fromisoformat(v["event_time"].replace("Z", "+00:00"))
        if when < since or (end is not None and when >= end) or v["transaction_id"] in chosen:
            continue
        if not v.get("challenger"):
            skipped += 1
            continue
        chosen[v["transaction_id"]] = v
    if not chosen:
        raise CompareError(
            "no verdict in the window carries a challenger (was one active? `models activate --challenger`)"
        )
    pairs: dict[tuple[str, str], int] = {}
    for v in chosen.values():
        key = (v["model_version"], v["challenger"]["version"])
        pairs[key] = pairs.get(key, 0) + 1
    (champion, challenger), _ = max(pairs.items(), key=lambda kv: kv[1])
    rows = [v for v in chosen.values() if (v["model_version"], v["challenger"]["version"]) == (champion, challenger)]
    return Paired(
        transaction_ids=[v["transaction_id"] for v in rows],
        champion=champion,
        challenger=challenger,
        champion_scores=np.asarray([v["score"] for v in rows], dtype=np.float64),
        challenger_scores=np.asarray([v["challenger"]["score"] for v in rows], dtype=np.float64),
        champion_decisions=np.asarray([v["decision"] for v in rows], dtype=str),
        challenger_decisions=np.asarray([v["challenger"]["decision"] for v in rows], dtype=str),
        amounts=np.asarray([v.get("amount") or 0.0 for v in rows], dtype=np.float64),
        skipped=skipped + len(chosen) - len(rows),
    )


def read_verdict_file(path: Path) -> list[dict[str, Any]]:
    """Verdicts of a JSON-lines file (one verdict object per line; blank lines ignored)."""
    try:
        with path.open("rb") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as e:
        raise CompareError(f"{path}: cannot read verdicts ({e})") from e


def read_label_file(path: Path) -> dict[str, bool]:
    """Each transaction's latest label from a JSON-lines file of label records (as the worker validates)."""
    from training.backtest.history import read_label_file as read_events

    try:
        events, _ = read_events(path)
    except OSError as e:
        raise CompareError(f"{path}: cannot read labels ({e})") from e
    return latest((e.transaction_id, e.reported_at_ms, e.is_fraud) for e in events)


def latest(labels: Iterable[tuple[str, int, bool]]) -> dict[str, bool]:
    """(transaction_id, reported_at_ms, is_fraud) → each transaction's latest label."""
    seen: dict[str, tuple[int, bool]] = {}
    for tx_id, reported_ms, fraud in labels:
        if tx_id not in seen or reported_ms >= seen[tx_id][0]:
            seen[tx_id] = (reported_ms, fraud)
    return {tx_id: fraud for tx_id, (_, fraud) in seen.items()}


def read_database_labels(settings: Any) -> dict[str, bool]:
    """Each stored transaction's latest label (`pipeline.db.repository.latest_labels`)."""
    from pipeline.db.repository import latest_labels

    return _from_database(settings, "labels", lambda session: latest_labels(session=session))


def read_database_verdicts(settings: Any, since: datetime, until: datetime | None) -> list[dict[str, Any]]:
    """The stored verdicts with an event time in [since, until), as `pair_verdicts` reads them: the fields
    it uses only (no reasons or features are kept), the challenger's call included when there was one."""
    from pipeline.db.repository import iter_verdicts

    def read(session: Any) -> list[dict[str, Any]]:
        return [
            {
                "transaction_id": v.transaction_id,
                "event_time": v.event_time.isoformat(),
                "model_version": v.model_version,
                "score": v.score,
                "decision": v.decision,
                "amount": v.amount,
                "challenger": None if v.challenger is None else v.challenger.model_dump(),
            }
            for v in iter_verdicts(session=session, since=_as_utc(since), until=_as_utc(until) if until else None)
        ]

    return _from_database(settings, "verdicts", read, schema_at_head=True)


def _from_database(settings: Any, what: str, read: Callable[[Any], _T], *, schema_at_head: bool = False) -> _T:
    """`read(session)` on the database the settings select; database failures become a CompareError."""
    from pipeline.db.engine import RiskstreamDbError, create_engine_from_settings, session_factory
    from pipeline.db.migrate import require_head

    engine = create_engine_from_settings(settings)
    try:
        if schema_at_head:  # a database before 0004 has no challenger columns: say so, not "no such column"
            require_head(settings.database.resolved_url())
        with session_factory(engine)() as session:
            return read(session)
    except RiskstreamDbError as e:
        raise CompareError(f"cannot read the stored {what}: {e}") from e
    finally:
        engine.dispose()


def _rates(flagged: npt.NDArray[np.bool_], labels: npt.NDArray[np.bool_]) -> dict[str, float]:
    legit, fraud = int((~labels).sum()), int(labels.sum())
    return {
        "flag_rate": float(flagged.mean()) if len(flagged) else float("nan"),
        "fpr": float((flagged & ~labels).sum() / legit) if legit else float("nan"),
        "recall": float((flagged & labels).sum() / fraud) if fraud else float("nan"),
    }


def compare(paired: Paired, truth: dict[str, bool], policy: CostPolicy | None = None) -> dict[str, Any]:
    """The comparison's figures (JSON-ready)."""
    from sklearn.metrics import average_precision_score

    policy = policy or CostPolicy()
    labels = np.asarray([truth.get(t, False) for t in paired.transaction_ids], dtype=bool)
    both_classes = bool(labels.any() and not labels.all())
    champion_flags = np.isin(paired.champion_decisions, FLAGS)
    review_fpr = _rates(champion_flags, labels)["fpr"]
    models: dict[str, Any] = {}
    for role, version, scores, decisions in (
        ("champion", paired.champion, paired.champion_scores, paired.champion_decisions),
        ("challenger", paired.challenger, paired.challenger_scores, paired.challenger_decisions),
    ):
        flagged = np.isin(decisions, FLAGS)
        models[role] = {
            "version": version,
            "average_precision": float(average_precision_score(labels, scores)) if both_classes else float("nan"),
            "recall_at_champion_fpr": recall_at_fpr(scores, labels, review_fpr) if both_classes else float("nan"),
            "decisions": {d: int((decisions == d).sum()) for d in DECISIONS},
            "flagged": _rates(flagged, labels),
            "cost": decision_cost(
                reviewed=np.isin(decisions, ("review", "challenge")),
                declined=decisions == "decline",
                labels=labels,
                amounts=paired.amounts,
                policy=policy,
            ),
        }
    matrix = [[int(((paired.champion_decisions == a) & (paired.challenger_decisions == b)).sum()) for b in DECISIONS]
              for a in DECISIONS]  # fmt: skip
    return {
        "rows": len(labels),
        "fraud": int(labels.sum()),
        "skipped_verdicts": paired.skipped,
        "champion_fpr": review_fpr,
        "cost_policy": {"review_cost": policy.review_cost, "decline_fp_cost": policy.decline_fp_cost},
        "models": models,
        "agreement": {
            "decisions": list(DECISIONS),
            "matrix": matrix,
            "rate": float((paired.champion_decisions == paired.challenger_decisions).mean()),
        },
    }


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def markdown(s: dict[str, Any], plots: Sequence[str] = ()) -> str:
    ch, cl = s["models"]["champion"], s["models"]["challenger"]
    lines = [
        f"# Champion {ch['version']} vs challenger {cl['version']}",
        "",
        f"{s['rows']:,} transactions scored by both ({s['fraud']:,} fraud); {s['skipped_verdicts']:,} verdicts in "
        f"the window without this pair left out. The champion flagged {_num(100 * s['champion_fpr'], 2)} % of "
        "legitimate traffic; recall below is at that false-positive rate for both.",
        "",
        "| | champion | challenger |",
        "|---|---|---|",
        f"| version | {ch['version']} | {cl['version']} |",
        f"| average precision | {_num(ch['average_precision'])} | {_num(cl['average_precision'])} |",
        f"| recall at the champion's FPR | {_num(ch['recall_at_champion_fpr'])} "
        f"| {_num(cl['recall_at_champion_fpr'])} |",
        f"| flag rate (decisions) | {_num(ch['flagged']['flag_rate'])} | {_num(cl['flagged']['flag_rate'])} |",
        f"| recall (decisions) | {_num(ch['flagged']['recall'])} | {_num(cl['flagged']['recall'])} |",
        f"| cost: legitimate reviews | {ch['cost']['legit_reviews']:,.2f} | {cl['cost']['legit_reviews']:,.2f} |",
        f"| cost: legitimate declines | {ch['cost']['legit_declines']:,.2f} | {cl['cost']['legit_declines']:,.2f} |",
        f"| cost: fraud approved | {ch['cost']['fraud_approved']:,.2f} | {cl['cost']['fraud_approved']:,.2f} |",
        f"| **cost: total** | **{ch['cost']['total']:,.2f}** | **{cl['cost']['total']:,.2f}** |",
        "",
        f"## Decision agreement ({_num(100 * s['agreement']['rate'], 2)} %)",
        "",
        "| champion \\ challenger | " + " | ".join(s["agreement"]["decisions"]) + " |",
        "|---" * (len(s["agreement"]["decisions"]) + 1) + "|",
    ]
    for name, row in zip(s["agreement"]["decisions"], s["agreement"]["matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{n:,}" for n in row) + " |")
    lines += ["", *[f"![{p}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"


def write_plots(paired: Paired, truth: dict[str, bool], s: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    labels = np.asarray([truth.get(t, False) for t in paired.transaction_ids], dtype=bool)
    names = []
    if labels.any() and not labels.all():
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for role, scores in (("champion", paired.champion_scores), ("challenger", paired.challenger_scores)):
            precision, recall, _ = precision_recall_curve(labels, scores)
            m = s["models"][role]
            ax.plot(recall, precision, label=f"{role} {m['version']} (AP {m['average_precision']:.3f})")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on labelled outcomes")
        ax.legend(loc="upper right", fontsize=8)
        names.append(_save(fig, out / "precision_recall.png"))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    matrix = np.asarray(s["agreement"]["matrix"])
    ax.imshow(np.log1p(matrix), cmap="Blues")
    ticks = range(len(DECISIONS))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=DECISIONS, yticklabels=DECISIONS,
           xlabel="challenger", ylabel="champion", title="Decision agreement")  # fmt: skip
    for i in ticks:
        for j in ticks:
            ax.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center", fontsize=8)
    names.append(_save(fig, out / "agreement.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    parts = ("legit_reviews", "legit_declines", "fraud_approved")
    bottom = np.zeros(2)
    for part in parts:
        values = np.asarray([s["models"][r]["cost"][part] for r in ("champion", "challenger")])
        ax.bar(["champion", "challenger"], values, bottom=bottom, label=part.replace("_", " "))
        bottom += values
    ax.set(ylabel="cost", title="Cost under the cost policy")
    ax.legend(fontsize=8)
    names.append(_save(fig, out / "cost.png"))
    return names


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def write_report(
    paired: Paired, truth: dict[str, bool], out: Path, *, plots: bool = True
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Compute the comparison and write summary.json, report.md and the PNGs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    s = compare(paired, truth)
    names = write_plots(paired, truth, s, out) if plots else []
    paths = {"json": out / "summary.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(s, indent=2, allow_nan=True))
    paths["markdown"].write_text(markdown(s, names))
    return s, paths
