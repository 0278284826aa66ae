"""`riskstream sink`: store verdicts, transactions (audit) and labels in the database."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer


async def run_sink(metrics_port: int) -> None:
    from prometheus_client import start_http_server

    from pipeline.db.engine import create_engine_from_settings, session_factory
    from pipeline.db.migrate import require_head
    from pipeline.settings import get_settings
    from pipeline.sink import Sink

    settings = get_settings()
    engine = create_engine_from_settings(settings)
    require_head(settings.database.resolved_url())
    if metrics_port:
        start_http_server(metrics_port, addr=settings.worker.web_host)
    sink = Sink(settings, session_factory(engine))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sink.stopping.set)
    try:
        await sink.run()
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    @app.command("sink")
    def sink_command(
        metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0 = off).")] = 6067,
    ) -> None:
        """Store verdicts, the audit copy of transactions and labels in the database, exactly once."""
        from pipeline.logs import configure_logging

        configure_logging()
        asyncio.run(run_sink(metrics_port))
