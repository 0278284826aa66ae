"""Fail loudly if a Faust or aiokafka upgrade removes a private name `pipeline.faust_internals` relies on,
and prove that no other module under `pipeline/` touches one."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

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
    pattern = re.compile(r"_thread|_fetch_max_wait|_create_worker_consumer|_buffered_partitions|\.on_buffer_")
    offenders = [
        str(path.relative_to(PIPELINE))
        for path in PIPELINE.rglob("*.py")
        if path.name != "faust_internals.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
