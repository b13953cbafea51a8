"""`serve --workers N`: serve listens, and N API processes of its own accept on its socket,
supervised like the followers (src/cli.py ``_serve_processes``, src/workers/supervisor.py)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.service import Proc, Service, alive, wait_until
from tests.e2e.test_metrics import health_burst, multiprocess_dir
from tests.e2e.test_service import read_name, register
from tests.e2e.test_supervision import wait_all_gone

pytestmark = pytest.mark.e2e

API_PROCESS = "rightsledger api-process"
"""The command line of the API processes serve starts."""

CONNECTION_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError)
"""What a client retries: the connection failed or was cut before an answer (a process
killed with requests in hand); never a timeout, and never an answer."""


def api_processes(service: Service) -> list[Proc]:
    """serve's API processes (its children running ``api-process``)."""
    return [p for p in service.processes()[1:] if API_PROCESS in p.command]


def two_api_processes(service: Service) -> Callable[[], list[Proc] | None]:
    """A condition: serve's two API processes, once both run."""

    def condition() -> list[Proc] | None:
        found = api_processes(service)
        return found if len(found) == 2 else None

    return condition


def counting_pids(directory: Path) -> set[int]:
    """The pids of the API processes that have counted a request: each writes its counters
    to ``counter_<pid>.db`` in the multiprocess directory."""
    return {int(f.stem.split("_")[-1]) for f in directory.glob("counter_*.db")}


@dataclass
class Prober:
    """A client that asks the service, on a new connection each time, until stopped: a
    liveness check and an authenticated read of one customer, retried only on connection
    errors. Every answer and its time is kept."""

    service: Service
    customer_id: str
    answers: list[tuple[float, int]] = field(default_factory=list)
    retried: int = 0
    failure: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)
        assert not self._thread.is_alive(), "the prober did not stop"

    def answered_between(self, start: float, end: float) -> int:
        return sum(1 for at, _ in self.answers if start < at < end)

    def _ask(self, path: str, headers: dict[str, str]) -> int:
        while True:
            try:
                with self.service.client(purpose="account", timeout=30) as http:
                    return http.get(path, headers=headers).status_code
            except CONNECTION_ERRORS:
                self.retried += 1
                if self._stop.wait(0.05):
                    raise

    def _run(self) -> None:
        paths = ("/health", f"/v1/customers/{self.customer_id}")
        try:
            while not self._stop.is_set():
                for path in paths:
                    status = self._ask(path, {})
                    self.answers.append((time.monotonic(), status))
        except BaseException as error:  # reported by the test
            self.failure = error


def test_a_killed_api_process_is_restarted_while_the_other_keeps_answering(
    start_service: Callable[..., Service],
) -> None:
    """With `serve --workers 2`, both API processes serve requests; SIGKILL of one: serve logs
    its exit status and starts another after the back-off, the other answers every request
    meanwhile (a client retries only requests whose connection was cut), and the new process
    serves requests too, commands included."""
    service = start_service("service", workers=2)
    first = wait_until(two_api_processes(service), 30, "two API processes")
    assert {p.ppid for p in first} == {service.pid}
    directory = multiprocess_dir(service)

    def both_serve(pids: set[int]) -> bool:
        health_burst(service, 16)
        return pids <= counting_pids(directory)

    wait_until(lambda: both_serve({p.pid for p in first}), 60, "both API processes to answer")
    with service.client() as http:
        customer_id, position = register(http, "Grace Hopper")
        assert read_name(http, customer_id, position) == "Grace Hopper"

    prober = Prober(service, customer_id)
    prober.start()
    try:
        wait_until(lambda: len(prober.answers) >= 10, 30, "the prober's first answers")
        killed, survivor = first
        killed_at = time.monotonic()
        os.kill(killed.pid, signal.SIGKILL)

        def replaced() -> Proc | None:
            now = api_processes(service)
            new = [p for p in now if p.key not in {killed.key, survivor.key}]
            return new[0] if len(now) == 2 and len(new) == 1 else None

        new = wait_until(replaced, 30, "the killed API process to be replaced")
        replaced_at = time.monotonic()
        assert not alive(killed)
        assert alive(survivor)
        assert new.ppid == service.pid
        log = service.log()
        assert re.search(r"api process \d exited with -9; restarting in 0\.5 s", log), log[-3000:]
        wait_until(lambda: both_serve({survivor.pid, new.pid}), 60, "the new process to answer")
        answered = len(prober.answers)
        wait_until(lambda: len(prober.answers) >= answered + 10, 30, "more answers")
    finally:
        prober.stop()
    assert prober.failure is None, f"the prober failed: {prober.failure!r}"
    assert {status for _, status in prober.answers} == {200}
    # the survivor answered while the killed process was down and not yet replaced
    assert prober.answered_between(killed_at, replaced_at) > 0

    with service.client() as http:
        customer_id, position = register(http, "Katherine Johnson")
        assert read_name(http, customer_id, position) == "Katherine Johnson"


def test_serve_with_api_processes_stops_them_on_sigterm_and_takes_them_along_when_killed(
    start_service: Callable[..., Service],
) -> None:
    """`serve --workers 2` on SIGTERM stops its API processes and followers, removes the
    metrics directory it made, and ends by SIGTERM; a second one, SIGKILLed, leaves no
    process behind either (death signal, parent watch)."""
    first = start_service("first", workers=2)
    wait_until(two_api_processes(first), 30, "two API processes")
    directory = multiprocess_dir(first)
    assert directory.is_dir()
    first.send_signal(signal.SIGTERM)
    assert first.wait_exit(30) == -signal.SIGTERM
    wait_all_gone(first, 15, "serve's processes to end after its SIGTERM")
    assert not directory.exists()

    second = start_service("second", workers=2)
    started = wait_until(two_api_processes(second), 30, "two API processes")
    second.send_signal(signal.SIGKILL)
    second.wait_exit(10)
    wait_all_gone(second, 20, "serve's processes to end after its SIGKILL")
    assert not any(alive(p) for p in started)
