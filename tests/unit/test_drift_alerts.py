"""The drift alert rules: one file for Prometheus (deploy/) and the chart, on the gauges the workers export."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import Gauge

from pipeline import metrics
from pipeline.drift import PSI_ALERT

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/drift-alerts.yml"


def test_the_chart_ships_the_same_rules_as_deploy() -> None:
    assert (ROOT / "helm/riskstream/files/drift-alerts.yml").read_text() == RULES.read_text()


def test_prometheus_loads_the_rules_and_compose_mounts_them_beside_its_config() -> None:
    assert "drift-alerts.yml" in yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())["rule_files"]
    assert "./deploy/drift-alerts.yml:/etc/prometheus/drift-alerts.yml:ro" in (ROOT / "docker-compose.yml").read_text()


def test_the_alerts_fire_on_a_sustained_psi_above_the_drift_mark_of_exported_gauges() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    exported = {m.name for g in vars(metrics).values() if isinstance(g, Gauge) for m in g.describe()}
    assert {r["alert"] for r in rules} == {"RiskstreamFeatureDrift", "RiskstreamScoreDrift"}
    for rule in rules:
        metric = rule["expr"].split("(")[-1].split(")")[0]
        assert metric in exported
        assert rule["expr"].endswith(f"> {PSI_ALERT}")
        assert rule["for"] == "15m"


def test_the_prometheus_rule_is_off_by_default() -> None:
    values = yaml.safe_load((ROOT / "helm/riskstream/values.yaml").read_text())
    assert values["prometheusRule"]["enabled"] is False
