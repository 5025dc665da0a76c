"""A long-lived task for the life of the application, as an aiohttp cleanup context:
started with the app, cancelled (and awaited) when it shuts down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def background(name: str, forever: Callable[[web.Application], Coroutine[Any, Any, None]]
               ) -> CleanupContext:
    """A cleanup context running `forever(app)` as the task `name`."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(forever(app), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    context.__name__ = f"{name}_ctx"
    return context
