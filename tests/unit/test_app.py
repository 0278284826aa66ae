"""The Faust app as the worker builds it: settings that Faust itself does not expose still apply."""

from __future__ import annotations

from pipeline.app import create_app
from pipeline.settings import RulesSettings, Settings, WorkerSettings


async def test_the_worker_consumer_uses_the_configured_fetch_wait_not_fausts_1500_ms() -> None:
    app = create_app(Settings(worker=WorkerSettings(app_id="unit-fetch-wait", fetch_max_wait_ms=7)))
    thread = app.consumer._thread
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == 7
    finally:
        await consumer.stop()


def test_rebalances_do_not_wait_for_records_the_stages_hold_on_purpose() -> None:
    app = create_app(Settings(worker=WorkerSettings(app_id="unit-wait-empty")))
    assert app.conf.stream_wait_empty is False


def test_the_topics_command_creates_exactly_the_changelogs_the_tables_use() -> None:
    from pipeline.agents import build_topology
    from pipeline.kafka.admin import changelog_topic_specs

    settings = Settings(worker=WorkerSettings(app_id="unit-changelogs"), rules=RulesSettings(source="files"))
    app = create_app(settings)
    build_topology(app, settings)
    used = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    specs = changelog_topic_specs(settings)
    assert used == {spec.name for spec in specs}
    assert all(spec.config["cleanup.policy"] == "compact" and spec.partitions == 8 for spec in specs)
