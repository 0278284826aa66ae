"""`riskstream kafka start|stop|status|fetch` and `riskstream topics`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from pipeline.kafka.local import LocalKafka
from pipeline.settings import get_settings

console = Console()


def register(app: typer.Typer) -> None:
    kafka = typer.Typer(help="The local single-node Apache Kafka broker (KRaft, no Docker).", no_args_is_help=True)
    app.add_typer(kafka, name="kafka")

    def _local() -> LocalKafka:

        return LocalKafka(get_settings().local_kafka)

    def _fail(e: Exception) -> None:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1)

    @kafka.command()
    def fetch() -> None:
        """Download the pinned broker jars from Maven Central (done by `start` when needed)."""
        from pipeline.kafka.local import LocalKafkaError

        try:
            console.print(f"Kafka jars in {_local().ensure_jars()}")
        except LocalKafkaError as e:
            _fail(e)

    @kafka.command()
    def start() -> None:
        """Start the broker (idempotent) and wait until it answers."""
        from pipeline.kafka.local import LocalKafkaError

        try:
            status = _local().start()
        except LocalKafkaError as e:
            _fail(e)
        console.print(f"Kafka {status.version} running at {status.bootstrap} (pid {status.pid})")

    @kafka.command()
    def stop() -> None:
        """Stop the broker cleanly."""
        console.print("Kafka stopped" if _local().stop() else "Kafka was not running")

    @kafka.command()
    def status() -> None:
        """Say whether the broker runs, where, and where its data is."""
        s = _local().status()
        state = "[green]running[/green]" if s.running else "[yellow]stopped[/yellow]"
        console.print(f"Kafka {s.version}: {state} at {s.bootstrap} (pid {s.pid}), data in {s.data_dir}")
        if not s.running:
            raise typer.Exit(3)

    @app.command()
    def topics() -> None:
        """Create the pipeline's topics with the configured partitions (idempotent)."""
        from pipeline.kafka.admin import TopicError, default_topic_specs, ensure_topics

        settings = get_settings()
        specs = default_topic_specs(settings)
        try:
            result = ensure_topics(settings.kafka.bootstrap, specs)
        except TopicError as e:
            _fail(e)
        table = Table("topic", "partitions", "status")
        for spec in specs:
            table.add_row(spec.name, str(spec.partitions), result[spec.name])
        console.print(table)
