"""The Faust application: `create_app(settings)` builds it; the worker command runs it.

State is kept in Faust tables backed by compacted changelog topics. The memory store rebuilds a worker's
tables from their changelogs when it is assigned partitions (after a restart or a rebalance).
"""

from __future__ import annotations

from typing import Any

import faust

from pipeline.faust_internals import configure_worker_consumer
from pipeline.logs import logging_config
from pipeline.settings import Settings


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
        # Hand each topic's records to the stages in slices, so an internal topic is not served only after
        # a whole fetch of a backlogged input. (It once exposed the stale "caught up" claims fixed in
        # pipeline.merge: the crash test failed 2 runs in 3 with it, before that fix.)
        "broker_max_poll_records": 1000,
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
    configure_worker_consumer(app, worker.fetch_max_wait_ms)
    return app
