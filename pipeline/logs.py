"""Structured logs: one JSON object per line (or plain text for a terminal), level from the environment.

Secrets never reach a log line: settings hold them as SecretStr and database URLs are redacted before
they are logged. Card numbers never do either: both formats mask them in the finished line (message, fields,
traceback), whatever logged it (our code, Faust, uvicorn). A `transaction_id` given in `extra=` becomes a
field of its own.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.pan import mask_pans_text

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask_pans_text(orjson.dumps(entry, default=str).decode())


class TextFormatter(logging.Formatter):
    """The plain format for terminals, card numbers masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_pans_text(super().format(record))


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for our processes (Faust's worker takes it too)."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"()": TextFormatter, "fmt": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {"aiokafka": {"level": "WARNING"}, "kafka": {"level": "WARNING"}},
    }


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    from pipeline.settings import get_settings

    settings = get_settings()
    logging.config.dictConfig(logging_config(level or settings.log_level, fmt or settings.log_format))
