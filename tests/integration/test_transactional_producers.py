"""Payment systems that produce with Kafka transactions: every commit writes a control marker that takes an
offset but is never handed to a consumer, so the offsets a stage sees jump by one after each transaction.
Every committed transaction gets its verdict, an aborted one none, and the jumps are not taken for skipped
records (before: sought back forever, no verdict after the first commit marker).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from tests.fixtures.processes import PipelineEnv, RoleProcess, consume_by_key
from tests.integration.test_poison import good

pytestmark = pytest.mark.integration


def produce_in_transactions(bootstrap: str, topic: str, batches: list[list[dict[str, Any]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"payments-{topic}",
                         "partitioner": "murmur2_random", "linger.ms": 5})  # fmt: skip
    producer.init_transactions(30)
    for batch in batches:
        producer.begin_transaction()
        for tx in batch:
            producer.produce(topic, orjson.dumps(tx), tx["card_id"].encode())
        producer.commit_transaction(30)
    assert producer.flush(30) == 0


def produce_aborted(bootstrap: str, topic: str, txs: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"payments-aborting-{topic}",
                         "partitioner": "murmur2_random"})  # fmt: skip
    producer.init_transactions(30)
    producer.begin_transaction()
    for tx in txs:
        producer.produce(topic, orjson.dumps(tx), tx["card_id"].encode())
    producer.flush(30)
    producer.abort_transaction(30)


async def test_transactions_produced_in_kafka_transactions_all_get_verdicts(
    pipeline_env: PipelineEnv, role_processes: list[RoleProcess]
) -> None:
    topics = pipeline_env.topics
    worker = RoleProcess("worker", pipeline_env).start()
    role_processes.append(worker)
    tx_topic = topics["TRANSACTIONS_TOPIC"]
    txs = [good(i, "txn") for i in range(120)]
    aborted = [good(i, "aborted") for i in range(120, 140)]
    produce_in_transactions(pipeline_env.bootstrap, tx_topic, [txs[i : i + 10] for i in range(0, 60, 10)])
    produce_aborted(pipeline_env.bootstrap, tx_topic, aborted)  # a hole of 20 records and a marker
    produce_in_transactions(pipeline_env.bootstrap, tx_topic, [txs[i : i + 10] for i in range(60, 120, 10)])
    ids = {t["transaction_id"] for t in txs}
    verdicts = await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], ids, timeout_s=120,
                                    processes=[worker])  # fmt: skip
    assert ids <= verdicts.keys()
    # The last records of every partition are markers: the partition still counts as caught up, so a new
    # transaction is released by the merge at once, not after a backlog's worth of waiting.
    late = [good(i, "later") for i in range(140, 150)]
    produce_in_transactions(pipeline_env.bootstrap, tx_topic, [late])
    later = await consume_by_key(pipeline_env.bootstrap, topics["VERDICTS_TOPIC"], {t["transaction_id"] for t in late},
                                 timeout_s=60, processes=[worker])  # fmt: skip
    assert not {t["transaction_id"] for t in aborted} & (verdicts.keys() | later.keys())
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, worker.log_tail(80)
