"""The Faust application: `create_app(settings)` builds it; the worker command runs it.

State is kept in Faust tables backed by compacted changelog topics. The memory store rebuilds a worker's
tables from their changelogs when it is assigned partitions (after a restart or a rebalance).
"""

from __future__ import annotations

from typing import Any

import faust

from pipeline.logs import logging_config
from pipeline.settings import Settings


def _set_consumer_fetch_wait(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500` and no setting to change it.

    aiokafka keeps one fetch in flight per broker, without the partitions whose records it is still
    handing over; a record arriving on such a partition waits until the in-flight fetch returns, that is,
    until data arrives on another partition or the broker's wait expires. In a three-stage pipeline the next
    record of a transaction often lands on just such a partition, so 1.5 s becomes a latency tail; a short
    wait bounds it, at the cost of an empty fetch every few milliseconds when idle.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_riskstream_fetch_wait", None) is not None:
        original = original.__wrapped__  # type: ignore[attr-defined]

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if self.app is app:
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by start(), when the Fetcher is built
        return consumer

    create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    create_worker_consumer._riskstream_fetch_wait = fetch_max_wait_ms  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    worker = settings.worker
    kafka = settings.kafka
    options: dict[str, Any] = {
        "broker": f"kafka://{kafka.bootstrap}",
        "store": "memory://",
        "datadir": str(worker.data_dir),
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_enabled": worker.web_port > 0,
        "web_port": max(worker.web_port, 1),
        "web_bind": worker.web_host,
        # Latency: the synchronous path pays every hop, so do not wait to fill producer batches, and let
        # consumers return as soon as there is data.
        "producer_linger": 0.0,
        "consumer_max_fetch_size": 4 * 1024 * 1024,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": 8192,
        "table_standby_replicas": 0,
        # A crashed worker's partitions move after this, not after Kafka's 45 s default.
        "broker_session_timeout": worker.session_timeout_seconds,
        "broker_heartbeat_interval": min(3.0, worker.session_timeout_seconds / 3),
        "topic_disable_leader": True,
        # On a rebalance or a stop, Faust would wait until every consumed record is acked. The stages hold
        # records unacked on purpose (the event-time merge and the join wait for other partitions, which
        # are paused then), so that wait never ends: the survivor of a rebalance deadlocked and a worker
        # asked to stop hung. Without it Faust commits what is acked (never past a held record, see
        # pipeline.acks) and the partition's next owner re-reads the rest, which the stages recognise.
        "stream_wait_empty": False,
        "logging_config": logging_config(settings.log_level, settings.log_format),
    }
    options.update(overrides)
    app = faust.App(worker.app_id, **options)
    _set_consumer_fetch_wait(app, worker.fetch_max_wait_ms)
    return app
