"""Fail loudly if a Faust or aiokafka upgrade removes a private name `pipeline.faust_internals` relies on,
and prove that no other module under `pipeline/` touches one."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from pipeline import faust_internals

PIPELINE = Path(faust_internals.__file__).parent


@pytest.mark.parametrize(("owner", "name"), [(o, n) for o, names in faust_internals.USED.items() for n in names])
def test_every_private_name_relied_on_still_exists(owner: str, name: str) -> None:
    module, _, cls = owner.rpartition(".")
    klass = getattr(importlib.import_module(module), cls)
    if name.startswith("_") and not hasattr(klass, name):
        # Instance attributes (set in __init__) are not on the class: look for the assignment in its source.
        sources = [inspect.getsource(k) for k in klass.__mro__ if k.__module__.startswith(("faust", "aiokafka"))]
        assert any(f"self.{name}" in s for s in sources), f"{owner}.{name} is gone: review pipeline.faust_internals"
    else:
        assert hasattr(klass, name), f"{owner}.{name} is gone: review pipeline.faust_internals"


def test_no_other_pipeline_module_touches_faust_internals() -> None:
    # The check, `grep -rn "_thread\|_fetch_max_wait\|_create_worker_consumer" pipeline/`, and more.
    pattern = re.compile(
        r"_thread|_fetch_max_wait|_create_worker_consumer|_buffered_partitions|\.on_buffer_|_add_gap\b"
    )
    offenders = [
        str(path.relative_to(PIPELINE))
        for path in PIPELINE.rglob("*.py")
        if path.name != "faust_internals.py" and pattern.search(path.read_text())
    ]
    assert offenders == []


def _faust_consumer(app: Any) -> Any:
    """Faust's real consumer class with only the bookkeeping its commit arithmetic reads."""
    consumer: Any = FaustConsumer.__new__(FaustConsumer)
    consumer.app = app
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    return consumer


def _highest_commit(consumer: Any, tp: TP, acks: list[int], cycles: int = 3) -> int:
    """Ack one offset per commit cycle, then run a few more cycles: the furthest offset Faust would commit."""
    highest = -1
    for offset in acks:
        consumer._acked[tp].append(offset)
        highest = max(highest, consumer._new_offset(tp) or -1)
    for _ in range(cycles):
        highest = max(highest, consumer._new_offset(tp) or -1)
    return highest


class _App:
    """Something to key the setting by, as a Faust app (weakly referenced)."""


def test_a_jump_in_a_guarded_topic_never_lets_the_commit_pass_unacked_records() -> None:
    # The stage handled 3..24 (held, not all acked); Faust's seek to the committed offset moved its read
    # offset back to 3, and the next record handed over (67) made it note 4..67 as a gap.
    app = _App()
    faust_internals.commit_only_acked(app, ["partials"])
    consumer, tp = _faust_consumer(app), TP("partials", 2)
    asyncio.run(consumer._add_gap(tp, 4, 67))
    assert _highest_commit(consumer, tp, [3, 4, 5]) == 6


def test_faust_alone_commits_over_a_gap_it_noted() -> None:
    # Why: unacked 6..67 would be lost at the next rebalance. If this starts failing, Faust changed how it
    # commits and `commit_only_acked` may no longer be needed. Another app (and topic): Faust's own way.
    app = _App()
    faust_internals.commit_only_acked(app, ["transactions"])
    consumer, tp = _faust_consumer(app), TP("partials", 2)
    asyncio.run(consumer._add_gap(tp, 4, 67))
    assert _highest_commit(consumer, tp, [3, 4, 5]) == 68
