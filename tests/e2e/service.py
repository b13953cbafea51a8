"""The service as ``make run`` starts it: ``python -m rightsledger serve`` as a subprocess.

``serve`` runs the API (uvicorn) and starts the projection worker (``projections run``), the
request workers with the Kafka relay (``workers run``) and, with no Kafka configured, an
embedded Tansu broker, each a process of its own. :class:`Service` starts all of that on one
test's schema, in a process group of its own, waits until every part is up, and takes the whole
group down again. Usage::

    with Service(database.url, schema, tmp_path / "api").start() as service:
        with service.client() as http:
            http.get("/ready").raise_for_status()

A second :class:`Service` on the same schema with ``run_followers=False`` is one more API
replica (no followers, no broker). The process table is read from ``/proc``; Linux only.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import httpx
import psycopg

from rightsledger.workers.broker import free_port
from tests.conftest import ADMIN_KEY

T = TypeVar("T")

HOST = "127.0.0.1"

FOLLOWERS = ("projections run", "workers run")
"""The command lines of the processes ``serve`` starts beside the API."""

_LOG_TAIL = 6000
_IN_USE = ("address already in use", "already in use", "errno 98", "addrinuse")


class ServiceError(AssertionError):
    """The service did not start, or did not stop, as it should (a test failure)."""


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns a truthy value; return it.

    Exceptions of the types in ``ignore`` count as "not yet". When ``timeout`` seconds pass
    first, fail with an AssertionError naming ``what`` and quoting the last result or error.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except ignore as error:
            last = f"last error: {error!r}"
        else:
            if result:
                return result
            last = f"last result: {result!r}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what} ({last})")
        time.sleep(interval)


# -- the process table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One process as /proc showed it. ``started`` (clock ticks since boot) tells a process
    apart from a later one that was given the same pid."""

    pid: int
    ppid: int
    pgid: int
    state: str
    started: int
    command: str

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.started)


def read_proc(pid: int) -> Proc | None:
    """The process ``pid``, or None when there is none or it is a zombie (it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or parentheses
    fields = stat[stat.rindex(")") + 2 :].split()
    state = fields[0]
    if state in ("Z", "X"):
        return None
    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return Proc(pid, int(fields[1]), int(fields[2]), state, int(fields[19]), command)


def process_table() -> list[Proc]:
    """Every live process (zombies excluded)."""
    found: list[Proc] = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None:
                found.append(proc)
    return found


def alive(proc: Proc) -> bool:
    """Whether ``proc`` still runs (and its pid was not given to another process since)."""
    now = read_proc(proc.pid)
    return now is not None and now.started == proc.started


def descendants(root: int, table: Iterable[Proc] | None = None) -> list[Proc]:
    """``root`` and every process below it, root first."""
    procs = list(table if table is not None else process_table())
    by_parent: dict[int, list[Proc]] = {}
    for proc in procs:
        by_parent.setdefault(proc.ppid, []).append(proc)
    tree = [proc for proc in procs if proc.pid == root]
    queue = [root]
    while queue:
        for child in by_parent.get(queue.pop(), []):
            tree.append(child)
            queue.append(child.pid)
    return tree


# -- the service ---------------------------------------------------------------------------


class Service:
    """``python -m rightsledger serve`` on one schema, with its followers; see the module doc.

    Args:
        database_url: the PostgreSQL server (a test's ``database.url``).
        schema: the schema to serve (a test's ``schema``); topics are named after it.
        home: a directory for the log file (``<name>.log``) and the data dir; created.
        name: names the log file and appears in error messages.
        workers: ``serve --workers N`` (API processes); None leaves the default.
        run_followers: False makes this an API-only replica: no projection worker, no request
            workers, no relay, no broker (``RIGHTSLEDGER_RUN_PROJECTIONS/_WORKERS=false``).
        env: more environment variables for ``serve`` (and ``spawn_cli``); they win.
        startup_timeout: seconds for the whole start-up, before a ServiceError.
        stop_timeout: seconds between SIGTERM to the group and SIGKILL to what is left.
    """

    def __init__(
        self,
        database_url: str,
        schema: str,
        home: Path,
        *,
        name: str = "service",
        workers: int | None = None,
        run_followers: bool = True,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.home = home
        self.name = name
        self.workers = workers
        self.run_followers = run_followers
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.events_topic = f"events.{schema}"
        self.notifications_topic = f"notifications.{schema}"
        self.port = 0
        self.kafka_port: int | None = None
        self.env: dict[str, str] = {}
        self.log_path = home / f"{name}.log"
        self.returncode: int | None = None
        self.killed: list[Proc] = []
        """Processes that ignored SIGTERM for ``stop_timeout`` seconds and were killed."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._seen: dict[tuple[int, int], Proc] = {}

    # -- what tests use --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The ``serve`` process's pid (also its process group's id)."""
        if self._process is None:
            raise ServiceError(f"{self.name} has not been started")
        return self._process.pid

    @property
    def kafka_bootstrap(self) -> str | None:
        """The embedded broker's address, when this service runs one."""
        return f"{HOST}:{self.kafka_port}" if self.kafka_port is not None else None

    def client(
        self, *, purpose: str | None = None, key: str = ADMIN_KEY, timeout: float = 30.0
    ) -> httpx.Client:
        """An HTTP client on :attr:`base_url` with ``key`` (the admin key unless given) and,
        when given, an ``X-Purpose`` header. Close it (use it as a context manager)."""
        headers = {"Authorization": f"Bearer {key}"}
        if purpose is not None:
            headers["X-Purpose"] = purpose
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def processes(self) -> list[Proc]:
        """The serve process and every live process below it, serve first (also recorded)."""
        if self._process is None:
            return []
        tree = descendants(self._process.pid)
        self._record(tree)
        return tree

    def pids(self) -> list[int]:
        """The pids of :meth:`processes`: serve first, then its children and theirs."""
        return [proc.pid for proc in self.processes()]

    def recorded(self) -> list[Proc]:
        """Every process of this service seen so far, whether or not it still runs."""
        return list(self._seen.values())

    def survivors(self) -> list[Proc]:
        """Recorded processes that still run, and any left in the service's process group."""
        self._record(self._group())
        return [proc for proc in self._seen.values() if alive(proc)]

    def child(self, match: str) -> Proc:
        """The one live process below serve whose command line contains ``match``."""
        found = [proc for proc in self.processes()[1:] if match in proc.command]
        if len(found) != 1:
            commands = "\n  ".join(proc.command for proc in self.processes())
            raise ServiceError(
                f"{self.name}: expected one process matching {match!r}, found {len(found)};"
                f" the service's processes:\n  {commands}"
            )
        return found[0]

    def kill(self, match: str, sig: signal.Signals = signal.SIGKILL) -> Proc:
        """Send ``sig`` to the child whose command line contains ``match``; return it."""
        proc = self.child(match)
        os.kill(proc.pid, sig)
        return proc

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the serve process alone (not its group), as a supervisor would."""
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        """Wait until the serve process has exited; its exit status."""
        assert self._process is not None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name}: serve still running after {timeout:.1f} s\n{self._describe()}"
            ) from None

    def spawn_cli(
        self, *args: str, timeout: float = 120.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m rightsledger ARGS...`` on the same store and settings; output captured."""
        return subprocess.run(
            [sys.executable, "-m", "rightsledger", *args],
            env={**self.env, **(env or {})},
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log(self) -> str:
        """What serve and its children printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- life cycle ------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> Self:
        """Start serve and wait until the API and its followers are up; return ``self``.

        A port taken by another process between choosing it and binding it is retried with
        new ports. On any failure every process started is stopped and a ServiceError quotes
        the log.
        """
        if self._process is not None:
            raise ServiceError(f"{self.name} has already been started")
        self.home.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.log_path = self.home / f"{self.name}-attempt{attempt}.log"
            self._launch()
            try:
                self._wait_started()
            except AssertionError as error:  # a ServiceError, or a wait that timed out
                self.stop()
                if attempt < attempts and any(s in self.log().lower() for s in _IN_USE):
                    self._process = None
                    continue
                raise ServiceError(f"{error}\n{self._describe()}") from None
            except BaseException:
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> list[Proc]:
        """SIGTERM to the process group, wait; SIGKILL whatever is left. Idempotent.

        Returns the processes that still ran afterwards (none, unless SIGKILL failed).
        """
        process = self._process
        if process is None:
            return []
        self._record(descendants(process.pid))
        self._record(self._group())
        if process.poll() is None or self.survivors():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            while self.survivors() and time.monotonic() < deadline:
                time.sleep(0.05)
            left = self.survivors()
            if left or process.poll() is None:
                self.killed.extend(left)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                for proc in left:  # those that left the group
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if alive(proc):
                            os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
                with contextlib.suppress(AssertionError):
                    wait_until(lambda: not self.survivors(), 10, "SIGKILLed processes to go")
        self.returncode = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.survivors()

    def __enter__(self) -> Self:
        return self if self._process is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "not started" if self._process is None else f"pid {self._process.pid}"
        return f"<Service {self.name} {self.base_url} {state}>"

    # -- internals -------------------------------------------------------------------------

    def _launch(self) -> None:
        self.port = free_port()
        self.kafka_port = free_port() if self.run_followers else None
        # nothing from the developer's shell reshapes the service: only these settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSLEDGER_")}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",  # the log shows each line when it is printed
                "RIGHTSLEDGER_DATABASE_URL": self.database_url,
                "RIGHTSLEDGER_DATABASE_SCHEMA": self.schema,
                "RIGHTSLEDGER_ADMIN_KEY": ADMIN_KEY,
                "RIGHTSLEDGER_DATA_DIR": str(self.home / "data"),
                "RIGHTSLEDGER_HOST": HOST,
                "RIGHTSLEDGER_PORT": str(self.port),
                "RIGHTSLEDGER_EVENTS_TOPIC": self.events_topic,
                "RIGHTSLEDGER_NOTIFICATIONS_TOPIC": self.notifications_topic,
                "RIGHTSLEDGER_POOL_SIZE": "4",
                "RIGHTSLEDGER_SWEEP_SECONDS": "1",
                # a bound on ?min_position= waits, not a delay: generous for a loaded machine
                "RIGHTSLEDGER_READ_WAIT_SECONDS": "10",
            }
        )
        if self.kafka_port is not None:
            env["RIGHTSLEDGER_KAFKA_PORT"] = str(self.kafka_port)
        else:
            env["RIGHTSLEDGER_RUN_PROJECTIONS"] = "false"
            env["RIGHTSLEDGER_RUN_WORKERS"] = "false"
        env.update(self.extra_env)
        self.env = env
        command = [sys.executable, "-m", "rightsledger", "serve"]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        self._log = self.log_path.open("ab")
        self._seen.clear()
        self.killed.clear()
        self.returncode = None
        self._process = subprocess.Popen(
            command,
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._record(descendants(self._process.pid))

    def _wait_started(self) -> None:
        deadline = time.monotonic() + self.startup_timeout

        def remaining() -> float:
            return max(0.1, deadline - time.monotonic())

        wait_until(
            lambda: self._answers("/health"),
            remaining(),
            f"{self.name}: GET /health to answer 200",
            ignore=(httpx.TransportError,),
        )
        wait_until(
            lambda: self._answers("/ready"),
            remaining(),
            f"{self.name}: GET /ready to answer 200",
            ignore=(httpx.TransportError,),
        )
        if self.run_followers:
            wait_until(
                self._followers_running,
                remaining(),
                f"{self.name}: the follower processes ({', '.join(FOLLOWERS)}) to start",
            )
            wait_until(
                self._locks_held,
                remaining(),
                f"{self.name}: the projection worker, request workers and relay to take"
                " their locks on the schema",
            )
        self.processes()

    def _check_running(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise ServiceError(
                f"{self.name}: serve exited with status {self._process.returncode} during start-up"
            )

    def _answers(self, path: str) -> bool:
        self._check_running()
        response = httpx.get(self.base_url + path, timeout=2.0)
        return response.status_code == 200

    def _followers_running(self) -> list[Proc] | None:
        self._check_running()
        children = self.processes()[1:]
        found = [c for c in children if any(f in c.command for f in FOLLOWERS)]
        return found if len(found) >= len(FOLLOWERS) else None

    def _locks_held(self) -> bool:
        """Each follower holds a PostgreSQL advisory lock on the schema while it works (a
        standby waits for it): once all are held, the log is being followed. With two full
        services on one schema the first one's followers may be the ones holding them."""
        # the followers must still be up: one that died at start-up took no lock of its own
        if self._followers_running() is None:
            raise ServiceError(f"{self.name}: a follower process exited during start-up")
        keys = [
            f"rightsledger.projections.{self.schema}",
            f"rightsledger.request-workers.{self.schema}",
            f"rightsledger.relay.{self.events_topic}.{self.schema}",
        ]
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(DISTINCT k) FROM unnest(%s::text[]) AS k JOIN pg_locks AS l"
                " ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(k)::bigint",
                (keys,),
            ).fetchone()
        return row is not None and row[0] == len(keys)

    def _group(self) -> list[Proc]:
        if self._process is None:
            return []
        return [proc for proc in process_table() if proc.pgid == self._process.pid]

    def _record(self, procs: Iterable[Proc]) -> None:
        for proc in procs:
            self._seen.setdefault(proc.key, proc)

    def _describe(self) -> str:
        tail = self.log()[-_LOG_TAIL:].strip() or "(it printed nothing)"
        return (
            f"{self.name}: serve on {self.base_url}, schema {self.schema}; log {self.log_path}"
            f" ends:\n{tail}"
        )


def stored_as(event_type: str) -> str:
    """A PostgreSQL regular expression matching the stored topic of an event type (e.g.
    ``Customer.InvoiceRecorded``) whichever way it was stored: by stable name with its class
    version (``Customer.InvoiceRecorded.v1``) or by module path
    (``rightsledger.domain.customer:Customer.InvoiceRecorded``)."""
    return f"(^|[.:]){re.escape(event_type)}(\\.v[0-9]+)?$"
