"""`riskstream gateway`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import typer

from pipeline.settings import get_settings


def register(app: typer.Typer) -> None:
    @app.command()
    def gateway(
        host: str | None = typer.Option(None, help="Bind address (default from settings)."),
        port: int | None = typer.Option(None, help="Port (default from settings)."),
    ) -> None:
        """Serve POST /v1/score (Kafka request-reply) and the read API."""
        import uvicorn

        from api.deadline import stamping_protocol
        from api.main import create_app
        from pipeline.logs import logging_config

        settings = get_settings()
        if host is not None:
            settings.gateway.host = host
        if port is not None:
            settings.gateway.port = port
        uvicorn.run(
            create_app(settings),
            host=settings.gateway.host,
            port=settings.gateway.port,
            log_level=settings.log_level.lower(),
            log_config=logging_config(settings.log_level, settings.log_format),
            access_log=False,
            loop="asyncio",
            http=stamping_protocol(),  # the deadline counts from each request's arrival (api.deadline)
        )
