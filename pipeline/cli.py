"""The `riskstream` command: thin, it parses arguments and delegates to the modules that do the work."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="riskstream",
    help="Real-time fraud scoring on Kafka: exact velocity features, XGBoost and rules.",
    no_args_is_help=True,
    add_completion=False,
)

#: Command modules, each exposing `register(app)`. Order is the order of `--help`.
_COMMAND_MODULES = (
    "pipeline.commands.kafka",
    "pipeline.commands.worker",
    "pipeline.commands.gateway",
    "pipeline.commands.db",
    "pipeline.commands.generate",
    "pipeline.commands.features",
    "pipeline.commands.train",
    "pipeline.commands.models",
    "pipeline.commands.sink",
    "pipeline.commands.streams",
    "pipeline.commands.bench",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
