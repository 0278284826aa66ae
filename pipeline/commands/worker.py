"""`riskstream worker`: run one stream worker (join the consumer group; scale out by starting more)."""

from __future__ import annotations

import typer

from pipeline.settings import Settings, get_settings


def ensure_pipeline_topics(settings: Settings) -> None:
    """Create missing topics before joining the group: the event-time merge waits for progress from every
    partition of `transactions` and `labels`, so a topic nobody created would hold it forever."""
    import logging

    from pipeline.kafka.admin import TopicError, default_topic_specs, ensure_topics

    try:
        ensure_topics(settings.kafka.bootstrap, default_topic_specs(settings), timeout_s=15.0)
    except TopicError as e:
        if "partitions" in str(e):
            raise SystemExit(f"error: {e}") from None
        logging.getLogger("riskstream.worker").warning("could not check the topics (%s); Faust will retry", e)


def run_worker(*, web_port: int | None = None) -> None:
    from faust.worker import Worker

    from pipeline.agents import build_topology
    from pipeline.app import create_app

    settings = get_settings()
    if web_port is not None:
        settings.worker.web_port = web_port
    ensure_pipeline_topics(settings)
    app = create_app(settings)
    build_topology(app, settings)
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        web_port: int | None = typer.Option(
            None, help="Port of the worker's web/metrics server (0 disables it); default from settings."
        ),
    ) -> None:
        """Run a stream worker: features, scoring and verdicts for the partitions it is assigned."""
        run_worker(web_port=web_port)
