"""Route functions that block run in the event loop's executor, not through anyio.

The ledger, the views and the stores are synchronous: a route function written with ``def``
waits on PostgreSQL (and on the group commit) in a thread. FastAPI would hand each call to
``anyio.to_thread.run_sync``, whose bookkeeping (a cancel scope, a capacity limiter, a
worker queue) costs about as much CPU per request as all of FastAPI's own routing
(measured: docs/benchmarks.md). ``OffloadedRoute`` wraps such a function, when its route is
declared, in a coroutine that runs it with ``loop.run_in_executor`` in the current context
(context variables, such as the idempotency key's, go along), on the executor the app
installs at start (``install_executor``). A call that has started always runs to its end:
should the request be cancelled meanwhile, the cancellation waits for it, as anyio's does.

The route's module keeps the plain function, so code calling it directly (the console) is
unchanged.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from fastapi.routing import APIRoute

P = ParamSpec("P")
R = TypeVar("R")

THREADS = 40
"""Threads for blocking route functions (anyio's default capacity, which this replaces)."""


def offloaded(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``function`` as a coroutine that runs it in the loop's executor (see the module)."""

    @functools.wraps(function)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        context = contextvars.copy_context()
        call = functools.partial(context.run, function, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(None, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # the call goes on in its thread: let it finish before the cancellation does
            await asyncio.wait({future})
            raise

    return run


class OffloadedRoute(APIRoute):
    """An ``APIRoute`` whose blocking (``def``) endpoint runs through ``offloaded``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = offloaded(endpoint)
        super().__init__(path, endpoint, **kwargs)


def install_executor(threads: int = THREADS) -> ThreadPoolExecutor:
    """Make a pool of ``threads`` the running loop's default executor; the caller shuts it
    down when the app stops."""
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="api")
    asyncio.get_running_loop().set_default_executor(executor)
    return executor
