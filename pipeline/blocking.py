"""Blocking work (a model load, a database write, an admin request) run off the event loop.

One helper for every stage: the loop's default executor (what asyncio's own helper for threads uses, without
its context copy). Faust's thread internals are named only in `pipeline/faust_internals.py`, and the check
for them greps for that word: this module keeps it out of the rest of `pipeline/`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")


async def off_loop(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """Run `fn(*args, **kwargs)` in the loop's default executor and wait for it."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))
