"""Blocking route functions run in the loop's executor, with the request's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from rightsledger.api.offload import OffloadedRoute, install_executor, offloaded

caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="nobody")

T = TypeVar("T")


def run_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` in a thread of its own (another test's client may have left
    an event loop running in this one)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, main()).result(timeout=30)


def test_an_offloaded_call_runs_in_another_thread_with_the_callers_context() -> None:
    """The function runs outside the event loop's thread and sees the context variables set
    before the call (the idempotency key's slot depends on it)."""

    def blocking() -> tuple[str, int]:
        return caller.get(), threading.get_ident()

    async def main() -> tuple[str, int, int]:
        install_executor(2)
        caller.set("intake:desk")
        seen, thread = await offloaded(blocking)()
        return seen, thread, threading.get_ident()

    seen, thread, loop_thread = run_loop(main)
    assert seen == "intake:desk"
    assert thread != loop_thread


def test_a_cancelled_request_waits_for_its_call_to_finish() -> None:
    """Cancelling the awaiting task never abandons a call half-way: the cancellation is
    delivered only once the function has returned (a command is never left running after
    its request has been answered)."""
    started = threading.Event()
    release = threading.Event()
    finished: list[bool] = []

    def blocking() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    async def main() -> bool:
        install_executor(2)
        task = asyncio.ensure_future(offloaded(blocking)())
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        task.cancel()
        await asyncio.sleep(0)
        still_waiting = not task.done()
        release.set()
        with suppress(asyncio.CancelledError):
            await task
        return still_waiting

    assert run_loop(main), "the task ended before its call returned"
    assert finished == [True]


def who() -> str:
    return "auditor"


def item(item: int, q: str, actor: Annotated[str, Depends(who)]) -> dict[str, object]:
    return {"item": item, "q": q, "actor": actor, "thread": threading.current_thread().name}


def test_a_route_keeps_its_parameters_and_its_plain_function() -> None:
    """An ``OffloadedRoute`` answers like FastAPI's own route (path and query parameters,
    dependencies, the response model), and the module's function stays a plain function
    that other code (the console) calls directly."""
    router = APIRouter(route_class=OffloadedRoute)
    router.add_api_route("/items/{item}", item, methods=["GET"])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        executor = install_executor(2)
        yield
        executor.shutdown()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    with TestClient(app) as client:
        answer = client.get("/items/7", params={"q": "x"})
        refused = client.get("/items/seven", params={"q": "x"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["item"] == 7
    assert body["q"] == "x"
    assert body["actor"] == "auditor"
    assert str(body["thread"]).startswith("api")
    assert refused.status_code == 422
    assert item(1, "y", "direct")["actor"] == "direct"
