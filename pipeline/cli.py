"""The `riskstream` command: thin, it parses arguments and delegates to the modules that do the work.

The runtime's own commands are registered here. Commands of the packages around it (the gateway in `api`,
`generate` and `train` in `training`, `bench`) plug in through the `riskstream.commands` entry points of the
installed distribution (pyproject.toml), so the runtime never imports them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import typer

#: The entry-point group of plugged-in commands; each names a `register(app: typer.Typer) -> None`.
COMMAND_GROUP = "riskstream.commands"

app = typer.Typer(
    name="riskstream",
    help="Real-time fraud scoring on Kafka: exact velocity features, XGBoost and rules.",
    no_args_is_help=True,
    add_completion=False,
)

#: The runtime's own command modules, each exposing `register(app)`. Order is the order of `--help`;
#: plugged-in commands follow, by entry-point name.
_COMMAND_MODULES = (
    "pipeline.commands.kafka",
    "pipeline.commands.worker",
    "pipeline.commands.db",
    "pipeline.commands.features",
    "pipeline.commands.models",
    "pipeline.commands.rules",
    "pipeline.commands.sink",
    "pipeline.commands.streams",
    "pipeline.commands.drift",
)


def command_entry_points() -> list[EntryPoint]:
    """The plugged-in commands of the installed distributions, by name (one per name: the first on sys.path)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=COMMAND_GROUP):
        found.setdefault(ep.name, ep)
    return [found[name] for name in sorted(found)]


def plug_in(target: typer.Typer, found: Iterable[EntryPoint]) -> None:
    """Register each plugged-in command; one that fails to load is reported on stderr and left out, so a
    broken plug-in cannot take the runtime's own commands down with it."""
    for ep in found:
        try:
            ep.load()(target)
        except Exception as e:
            print(f"riskstream: command {ep.name!r} ({ep.value}) not loaded: {type(e).__name__}: {e}", file=sys.stderr)


for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)
plug_in(app, command_entry_points())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
