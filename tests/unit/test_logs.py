"""Log lines never carry a card number, whoever logs it and wherever it sits in the line."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from pipeline.logs import logging_config

PAN = "4111111111111111"


def formatter(fmt: str) -> logging.Formatter:
    """The formatter our processes' dictConfig builds (its "()" factory and arguments)."""
    spec = dict(logging_config("INFO", fmt)["formatters"]["default"])
    factory = spec.pop("()")
    built: logging.Formatter = factory(**spec)
    return built


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad card {PAN}")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("riskstream.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize(
    "rec",
    [
        record(f"dead letter reason={PAN}: Extra inputs are not permitted"),
        record("dead letter reason=%s", "4111/1111/1111/1111: Extra inputs are not permitted"),
        record("skipping %s", "4111:1111:1111:1111"),
        record("failed", exc=True),
    ],
    ids=["in the message", "in an argument", "grouped with colons", "in a traceback"],
)
def test_both_formats_mask_card_numbers(fmt: str, rec: logging.LogRecord) -> None:
    line = formatter(fmt).format(rec)
    assert PAN not in line and "1111/1111" not in line and "1111:1111" not in line, line
    assert "411111******1111" in line


def test_an_extra_field_is_masked_and_the_time_is_not() -> None:
    line = formatter("json").format(record("label", card=PAN, transaction_id="t-1"))
    entry = orjson.loads(line)
    assert entry["card"] == "411111******1111" and entry["transaction_id"] == "t-1"
    assert "*" not in entry["time"]
