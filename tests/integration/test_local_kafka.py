"""`riskstream kafka start|stop|status` and `riskstream topics` against the real broker jars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from pipeline.kafka.admin import TopicSpec, default_topic_specs, ensure_topics
from pipeline.kafka.local import LocalKafka, PortInUseError
from pipeline.settings import LocalKafkaSettings, Settings
from tests.fixtures.kafka import Broker, free_port


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, **env}, capture_output=True,
        text=True, timeout=180, check=False,
    )  # fmt: skip


def test_cli_starts_idempotently_reports_status_and_stops(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    env = {
        "RISKSTREAM_LOCAL_KAFKA__HOME": str(tmp_path / "kafka"),
        "RISKSTREAM_LOCAL_KAFKA__PORT": str(port),
        "RISKSTREAM_LOCAL_KAFKA__CONTROLLER_PORT": str(controller),
        "RISKSTREAM_KAFKA__BOOTSTRAP": f"127.0.0.1:{port}",
        "RISKSTREAM_KAFKA__PARTITIONS": "3",
    }
    try:
        first = _cli("kafka", "start", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        again = _cli("kafka", "start", env=env)  # already running: no second broker, no error
        assert again.returncode == 0, again.stdout + again.stderr
        status = _cli("kafka", "status", env=env)
        assert status.returncode == 0 and "running" in status.stdout
        topics = _cli("topics", env=env)
        assert topics.returncode == 0, topics.stdout + topics.stderr
        assert _cli("topics", env=env).returncode == 0  # idempotent
        names = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10).topics
        for spec in default_topic_specs(Settings()):
            assert spec.name in names
    finally:
        stopped = _cli("kafka", "stop", env=env)
    assert stopped.returncode == 0
    assert _cli("kafka", "status", env=env).returncode == 3
    # Data survives a restart: the KRaft storage is formatted once and kept.
    assert (tmp_path / "kafka" / "data" / "meta.properties").exists()


def test_a_taken_port_is_a_clear_error(kafka_broker: Broker, tmp_path: Path) -> None:
    taken = int(kafka_broker.bootstrap.rsplit(":", 1)[1])
    local = LocalKafka(LocalKafkaSettings(home=tmp_path / "k", port=taken, controller_port=free_port()))
    with pytest.raises(PortInUseError, match=str(taken)):
        local.start()


def test_topics_with_a_different_partition_count_are_reported(kafka_broker: Broker) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec("mismatch-topic", 2)])
    with pytest.raises(Exception, match="partition"):
        ensure_topics(kafka_broker.bootstrap, [TopicSpec("mismatch-topic", 4)])
