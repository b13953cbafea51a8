"""Command throughput of the rightsledger HTTP API, beside raw PostgreSQL inserts.

What it measures
    1. Starts the service as a subprocess (``.venv/bin/rightsledger serve``) on a free port,
       in a fresh PostgreSQL schema ``bench_<hex>`` with a random admin key, and waits for
       ``GET /ready``. (``--url`` targets an already running service instead.)
    2. Registers ``--customers`` customers (``POST /v1/customers``).
    3. Load: ``--clients`` threads, each with one persistent keep-alive HTTP connection and a
       disjoint share of the customers, send consent changes
       (``POST /v1/customers/{id}/consents``) for ``--seconds`` or ``--commands`` in total,
       alternating grant and withdrawal per customer so none is refused. Every command's
       latency is recorded; non-2xx answers and transport failures are counted as errors.
    4. Raw baseline: the same number of threads, each with its own autocommit psycopg
       connection, insert ~200-byte rows one per transaction into a scratch table in the bench
       schema, for as long as the load phase took.
    4a. After the load (before the baseline), waits until every follower has applied the
       whole log (each view's and the relay's tracking record at the head, the request
       workers' reported position there; ``--catch-up-timeout``), so a follower that lags
       during the load still has its work counted: the CPU figures cover the load and that
       catch-up.
    5. Prints commands/s (successful commands), p50/p95/p99/max latency (of all commands),
       errors, raw tx/s, the ratio commands/s / raw tx/s, the CPU used by the service (its
       process tree; in total and per process: API, projections, workers, broker, in ms per
       command), PostgreSQL, this process and anything else on the machine, how long the
       followers took to catch up, the targets and whether each is met (consents: >= 1000
       commands/s, p99 < 50 ms, <= 1.0 ms of service CPU per command; intake: >= 600
       requests/s, p99 < 50 ms), then one line of JSON (``meets_targets``: all of them).

How to run
    .venv/bin/python bench/commands.py                  # PostgreSQL at 127.0.0.1:5432/test
    .venv/bin/python bench/commands.py --seconds 30 --clients 16
    .venv/bin/python bench/commands.py --commands 5000
    .venv/bin/python bench/commands.py --embedded       # the service's embedded PostgreSQL
    .venv/bin/python bench/commands.py --database-url postgresql://u:p@host:5432/db
    .venv/bin/python bench/commands.py --url http://127.0.0.1:8000 --admin-key rlk_...

Other ``RIGHTSLEDGER_*`` variables in the environment are passed to the service, e.g.
``RIGHTSLEDGER_RUN_WORKERS=false RIGHTSLEDGER_RUN_PROJECTIONS=false`` to measure the command
path without the in-process log followers. ``--serve-cmd`` replaces the service command
(``{port}`` is replaced), e.g. to try other uvicorn settings; its output goes to a temporary
log, shown when it fails. When the default database is unreachable and no
``--database-url`` was given, the embedded PostgreSQL is used. Progress goes to stderr; the
summary and the JSON line (last line) go to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_COMMANDS_PER_S = {"consents": 1000.0, "requests": 600.0}
"""The issue's rate targets: consents, and intake (``--command requests``)."""
TARGET_P99_MS = 50.0
TARGET_CPU_MS = {"consents": 1.0}
"""Service CPU per command (every process together); set for consents only."""
RAW_PAYLOAD_BYTES = 200
EVIDENCE = {"method": "bench", "wording_version": "v1", "captured_at": "2026-11-24T10:00:00Z"}


# --------------------------------------------------------------------------- output


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A line on stderr, refreshed every ``interval`` seconds while a phase runs."""

    def __init__(
        self, label: str, render: Callable[[float, bool], str], interval: float = 1.0
    ) -> None:
        self._label = label
        self._render = render
        self._interval = interval
        self._tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{label}", daemon=True)
        self._start = time.perf_counter()

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._print(final=True)

    def _run(self) -> None:
        interval = self._interval if self._tty else max(self._interval, 2.0)
        while not self._stop.wait(interval):
            self._print(final=False)

    def _print(self, *, final: bool) -> None:
        line = f"[{self._label}] {self._render(time.perf_counter() - self._start, final)}"
        if self._tty:
            end = "\n" if final else ""
            sys.stderr.write(f"\r\x1b[K{line}{end}")
            sys.stderr.flush()
        else:
            note(line)


# --------------------------------------------------------------------------- HTTP


class HttpClient:
    """One persistent HTTP/1.1 connection (keep-alive); reconnects after a failure."""

    def __init__(self, base_url: str, admin_key: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._headers = {
            "Authorization": f"Bearer {admin_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._timeout)
            conn.connect()
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        return self._conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Status and body; status 0 when the request failed in transport."""
        payload = None if body is None else json.dumps(body).encode()
        try:
            conn = self._connection()
            conn.request(method, self._prefix + path, body=payload, headers=self._headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return 0, str(error).encode()
        if response.will_close:
            self.close()
        return response.status, data

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- the service


@dataclass
class Service:
    base_url: str
    admin_key: str
    database_url: str | None
    schema: str
    owns_schema: bool
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    data_dir: Path | None = None
    embedded: bool = False
    show_log: bool = False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def database_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def embedded_url(data_dir: Path) -> str | None:
    """The embedded server's URL, read from its postmaster.pid (socket dir and port)."""
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 5:
        return None
    port, socket_dir = lines[3].strip(), lines[4].strip()
    if socket_dir:
        return f"host={socket_dir} port={port} user=postgres dbname=postgres"
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres"


def stop_embedded_leftover(data_dir: Path) -> None:
    """Fast-stop an embedded postmaster the service left running (after a kill)."""
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def service_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.serve_cmd:
        return shlex.split(args.serve_cmd.replace("{port}", str(port)))
    exe = ROOT / ".venv" / "bin" / "rightsledger"
    if not exe.exists():
        found = shutil.which("rightsledger")
        if found is None:
            raise SystemExit("rightsledger is not installed: run `make install` first")
        exe = Path(found)
    command = [str(exe), "serve", "--port", str(port)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    return command


def start_service(args: argparse.Namespace) -> Service:
    port = args.port or free_port()
    schema = f"bench_{secrets.token_hex(6)}"
    admin_key = "rlk_bench_" + secrets.token_urlsafe(24)
    env = dict(os.environ)
    env.update(
        {
            "RIGHTSLEDGER_DATABASE_SCHEMA": schema,
            "RIGHTSLEDGER_ADMIN_KEY": admin_key,
            "RIGHTSLEDGER_PORT": str(port),
            "RIGHTSLEDGER_HOST": "127.0.0.1",
        }
    )
    database_url: str | None = None
    data_dir: Path | None = None
    embedded = args.embedded
    if not embedded:
        database_url = args.database_url or DEFAULT_DATABASE_URL
        if not database_reachable(database_url):
            if args.database_url:
                raise SystemExit(f"cannot connect to {args.database_url}")
            note(f"{DEFAULT_DATABASE_URL} is unreachable: using the embedded PostgreSQL")
            embedded, database_url = True, None
    if embedded:
        env.pop("RIGHTSLEDGER_DATABASE_URL", None)
        data_dir = Path(tempfile.mkdtemp(prefix="rightsledger-bench-"))
        env["RIGHTSLEDGER_DATA_DIR"] = str(data_dir)
    else:
        assert database_url is not None
        env["RIGHTSLEDGER_DATABASE_URL"] = database_url
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the server's lifetime
        prefix="rightsledger-bench-", suffix=".log", delete=False
    )
    command = service_command(args, port)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    service = Service(
        base_url=f"http://127.0.0.1:{port}",
        admin_key=admin_key,
        database_url=database_url,
        schema=schema,
        owns_schema=True,
        process=process,
        log_path=Path(log.name),
        data_dir=data_dir,
        embedded=embedded,
    )
    where = f"embedded PostgreSQL under {data_dir}" if embedded else "the PostgreSQL server"
    note(f"starting: {shlex.join(command)} (pid {process.pid}, schema {schema}, {where})")
    try:
        wait_ready(service, args.startup_timeout)
    except BaseException:
        service.show_log = True
        stop_service(service)
        drop_schema(service)
        raise
    if embedded:
        assert data_dir is not None
        service.database_url = embedded_url(data_dir)
    return service


def wait_ready(service: Service, timeout: float) -> None:
    client = HttpClient(service.base_url, service.admin_key, timeout=5)
    deadline = time.monotonic() + timeout
    status, body = 0, b""
    try:
        while time.monotonic() < deadline:
            if service.process is not None and service.process.poll() is not None:
                raise SystemExit(
                    f"the service exited with {service.process.returncode} before it was ready"
                )
            status, body = client.request("GET", "/ready")
            if status == 200:
                note(f"ready: {service.base_url} {body.decode(errors='replace')}")
                return
            time.sleep(0.2)
    finally:
        client.close()
    raise SystemExit(f"the service was not ready after {timeout:.0f}s (last answer {status})")


def log_tail(service: Service, lines: int = 40) -> str:
    if service.log_path is None:
        return ""
    try:
        text = service.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_service(service: Service) -> None:
    """SIGINT (uvicorn's graceful shutdown), then SIGTERM, then SIGKILL."""
    process = service.process
    if process is not None and process.poll() is None:
        for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                note(f"the service did not stop on {sig.name}")
    if service.data_dir is not None:
        stop_embedded_leftover(service.data_dir)
        shutil.rmtree(service.data_dir, ignore_errors=True)
    if service.log_path is not None:
        failed = process is not None and process.returncode not in (0, None, -signal.SIGINT)
        if service.show_log or failed:
            note(f"service log ({service.log_path}):\n{log_tail(service)}")
        else:
            with contextlib.suppress(OSError):
                service.log_path.unlink()


def drop_schema(service: Service) -> None:
    if not service.owns_schema or service.embedded or service.database_url is None:
        return
    try:
        with psycopg.connect(service.database_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(service.schema))
            )
    except psycopg.Error as error:
        note(f"could not drop schema {service.schema}: {error}")
    else:
        note(f"dropped schema {service.schema}")


# --------------------------------------------------------------------------- CPU accounting


def _proc_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads); zeros when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _proc_cpu_seconds(pid: int) -> float:
    return sum(_proc_cpu_times(pid))


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every visible process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                table[int(entry.name)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), name)
    return table


def _tree_cpu_times(pid: int) -> dict[int, tuple[float, float]]:
    """CPU times of ``pid`` and its descendants (a wrapper's children, uvicorn's workers)."""
    table = _process_table()
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, name) in table.items():
            if ppid == parent and child not in tree and name != "postgres":
                tree.add(child)
                frontier.append(child)
    return {member: _proc_cpu_times(member) for member in tree}


def _role(pid: int) -> str:
    """Which part of the service a process is, from its command line."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    words = [a.decode(errors="replace") for a in args]
    if any("tansu" in w for w in words):
        return "broker"
    for role in ("projections", "workers"):
        if role in words:
            return role
    return "api"


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


def _machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat (guest time is within user)."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
        values = [int(v) for v in line.split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class CpuSample:
    server: dict[int, tuple[float, float]]
    roles: dict[int, str]
    postgres: dict[int, float]
    bench: float
    machine: tuple[int, int]

    @classmethod
    def take(cls, server_pid: int | None) -> CpuSample:
        times = os.times()
        server = _tree_cpu_times(server_pid) if server_pid else {}
        return cls(
            server=server,
            roles={pid: _role(pid) for pid in server},
            postgres={pid: _proc_cpu_seconds(pid) for pid in _postgres_pids()},
            bench=times.user + times.system,
            machine=_machine_busy_jiffies(),
        )


def cpu_usage(
    before: CpuSample, after: CpuSample, seconds: float, *, own_server: bool
) -> dict[str, float | None]:
    """Cores used on average over ``seconds`` by each party, and the machine's busy share.

    Without ``own_server`` (``--url``) the service's CPU is not known: it is within "other".
    """
    postgres = sum(t - before.postgres.get(pid, 0.0) for pid, t in after.postgres.items())
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    seconds = max(seconds, 1e-9)
    server_user = server_sys = 0.0
    for pid, (user, system) in after.server.items():
        start = before.server.get(pid, (0.0, 0.0))
        server_user += user - start[0]
        server_sys += system - start[1]
    by_role: dict[str, float] = {}
    for pid, (user, system) in after.server.items():
        start = before.server.get(pid, (0.0, 0.0))
        role = after.roles.get(pid, "other")
        by_role[role] = by_role.get(role, 0.0) + user + system - start[0] - start[1]
    bench = after.bench - before.bench
    busy_cores = (os.cpu_count() or 1) * busy / total if total > 0 else 0.0
    others = busy_cores - (server_user + server_sys + postgres + bench) / seconds
    return {
        "server_cores": round((server_user + server_sys) / seconds, 2) if own_server else None,
        "server_sys_cores": round(server_sys / seconds, 2) if own_server else None,
        "postgres_cores": round(postgres / seconds, 2),
        "bench_cores": round(bench / seconds, 2),
        "machine_busy_pct": round(100.0 * busy / total, 1) if total > 0 else 0.0,
        "other_cores": round(max(others, 0.0), 2),
        **{
            f"service_{role}_cores": round(used / seconds, 3) if own_server else None
            for role, used in sorted(by_role.items())
        },
    }


# --------------------------------------------------------------------------- phases


@dataclass
class Worker:
    """One client thread's share: its customers, their consent state, and what it measured."""

    customers: list[str]
    quota: int | None
    held: dict[str, bool] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    exhausted: bool = False

    @property
    def done(self) -> int:
        return self.ok + self.errors

    def record_error(self, status: int, body: bytes) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(f"{status} {body[:200].decode(errors='replace')}")


def split_quota(total: int | None, parts: int) -> list[int | None]:
    if total is None:
        return [None] * parts
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_threads(count: int, target: Callable[[int, threading.Barrier], None]) -> float:
    """Start ``count`` threads released together; the seconds from release to the last end."""
    barrier = threading.Barrier(count + 1)
    threads = [
        threading.Thread(target=target, args=(i, barrier), name=f"bench-{i}", daemon=True)
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def register_customers(service: Service, count: int, clients: int, timeout: float) -> list[str]:
    ids: list[list[str]] = [[] for _ in range(clients)]
    errors: list[str] = []
    quotas = split_quota(count, clients)

    def register(index: int, barrier: threading.Barrier) -> None:
        client = HttpClient(service.base_url, service.admin_key, timeout)
        barrier.wait()
        try:
            for _ in range(quotas[index] or 0):
                n = sum(len(x) for x in ids) + len(errors) + 1
                body = {
                    "policy_version": "2026-01",
                    "identity": {"name": f"Customer {n}", "email": f"c{n}@example.org"},
                }
                status, data = client.request("POST", "/v1/customers", body)
                if status == 201:
                    ids[index].append(json.loads(data)["customer_id"])
                else:
                    errors.append(f"{status} {data[:200].decode(errors='replace')}")
        finally:
            client.close()

    def render(elapsed: float, _final: bool) -> str:
        done = sum(len(x) for x in ids)
        return f"registering customers: {done}/{count}  errors {len(errors)}  {elapsed:.1f}s"

    with Progress("setup", render):
        run_threads(clients, register)
    if errors:
        note(f"{len(errors)} registrations failed, e.g. {errors[0]}")
    return [customer for share in ids for customer in share]


@dataclass
class LoadResult:
    elapsed: float
    ok: int
    errors: int
    latencies: list[float]
    error_samples: list[str]
    cpu: dict[str, float | None]
    caught_up: float | None = None
    """Seconds after the load until every follower had applied the whole log (None: not
    measured, or not within the wait); the service's CPU is counted until then."""


COMMANDS = {
    "consents": "POST /v1/customers/{id}/consents",
    "requests": "POST /v1/requests",
}


REQUEST_TYPES = ("access", "opt_out", "deletion")
"""A customer may have one open request of each type: the intake load submits these in turn
to each customer (so ``--customers`` bounds it at three requests a customer)."""


def command(
    kind: str, customer: str, granted: bool, round_: int = 0
) -> tuple[str, dict[str, Any]]:
    """The path and body of one command of the chosen kind, never refused by a rule
    (``round_``: how many times this customer was given a command before)."""
    if kind == "requests":
        return "/v1/requests", {
            "customer_id": customer,
            "type": REQUEST_TYPES[round_ % len(REQUEST_TYPES)],
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "Please send me a copy of my personal data.",
        }
    return f"/v1/customers/{customer}/consents", {
        "purpose": "marketing",
        "channel": "email",
        "granted": granted,
        "evidence": EVIDENCE,
    }


def run_load(
    service: Service,
    customers: Sequence[str],
    args: argparse.Namespace,
) -> LoadResult:
    clients = args.clients
    quotas = split_quota(args.commands, clients)
    workers = [Worker(list(customers[i::clients]), quotas[i]) for i in range(clients)]
    seconds: float = args.seconds

    def work(index: int, barrier: threading.Barrier) -> None:
        worker = workers[index]
        client = HttpClient(service.base_url, service.admin_key, args.timeout)
        client.request("GET", "/health")  # open the connection before the clock starts
        barrier.wait()
        deadline = time.perf_counter() + seconds
        position = 0
        try:
            while True:
                if worker.quota is not None:
                    if worker.done >= worker.quota:
                        break
                elif time.perf_counter() >= deadline:
                    break
                customer = worker.customers[position % len(worker.customers)]
                round_ = position // len(worker.customers)
                if args.command == "requests" and round_ >= len(REQUEST_TYPES):
                    worker.exhausted = True  # every customer has one open request of each type
                    break
                position += 1
                granted = not worker.held.get(customer, False)
                path, body = command(args.command, customer, granted, round_)
                start = time.perf_counter()
                status, data = client.request("POST", path, body)
                worker.latencies.append(time.perf_counter() - start)
                if 200 <= status < 300:
                    worker.ok += 1
                    worker.held[customer] = granted
                else:
                    worker.record_error(status, data)
                    # A grant is never refused: after any failure, grant next time.
                    worker.held[customer] = False
        finally:
            client.close()

    last = [0.0, 0]

    def render(elapsed: float, final: bool) -> str:
        done = sum(w.done for w in workers)
        errors = sum(w.errors for w in workers)
        if final:
            rate, when = done / max(elapsed, 1e-9), "on average"
        else:
            rate, when = (done - last[1]) / max(elapsed - last[0], 1e-9), "now"
            last[0], last[1] = elapsed, done
        goal = f"/{args.commands}" if args.commands else f" in {elapsed:.0f}/{seconds:.0f}s"
        return f"{args.command} commands: {done}{goal}  {rate:,.0f}/s {when}  errors {errors}"

    server_pid = service.process.pid if service.process else None
    before = CpuSample.take(server_pid)
    with Progress("load", render):
        elapsed = run_threads(clients, work)
    caught_up = followers_caught_up(service, args.catch_up_timeout)
    after = CpuSample.take(server_pid)
    if any(w.exhausted for w in workers):
        note(
            f"the load stopped early: every customer had one open request of each type "
            f"({', '.join(REQUEST_TYPES)}); pass a larger --customers"
        )
    return LoadResult(
        elapsed=elapsed,
        ok=sum(w.ok for w in workers),
        errors=sum(w.errors for w in workers),
        latencies=[t for w in workers for t in w.latencies],
        error_samples=[s for w in workers for s in w.error_samples][:5],
        cpu=cpu_usage(
            before, after, elapsed + (caught_up or 0.0), own_server=server_pid is not None
        ),
        caught_up=caught_up,
    )


def followers_caught_up(service: Service, timeout: float) -> float | None:
    """Wait until every follower's tracking record (views, request workers, relay) is at the
    head of the log; the seconds it took, or None without a database or past ``timeout``.

    The service's CPU is sampled after this, so a follower that lags during the load still
    has its share of the work counted."""
    if service.database_url is None or timeout <= 0:
        return None
    started = time.perf_counter()
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name LIKE %s",
                (service.schema, "%\\_tracking"),
            )
            # the request workers track only the events they act on: their reported
            # position (follower_status, below) says how far they have looked
            if row[0] != "request_workers_tracking"
        ]
        positions = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}, coalesce(max(notification_id), 0) FROM {}").format(
                sql.Literal(table), sql.Identifier(service.schema, table)
            )
            for table in tables
        )
        head = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            sql.Identifier(service.schema, "rightsledger_events")
        )
        while True:
            last = conn.execute(head).fetchone()
            reached: dict[str, int] = dict(conn.execute(positions).fetchall()) if tables else {}
            reached.update(
                conn.execute(
                    sql.SQL("SELECT name, position FROM {} WHERE name = 'request-workers'").format(
                        sql.Identifier(service.schema, "follower_status")
                    )
                ).fetchall()
            )
            behind = {t: p for t, p in reached.items() if last is None or p < last[0]}
            if not behind:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                note(f"the followers were still behind {timeout:g} s after the load: {behind}")
                return None
            time.sleep(0.05)


@dataclass
class RawResult:
    elapsed: float
    transactions: int
    errors: int
    latencies: list[float]


@contextlib.contextmanager
def raw_table(url: str, schema: str) -> Iterator[sql.Composed]:
    table = sql.Identifier(schema, "raw_bench")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, payload bytea)").format(table)
        )
    try:
        yield sql.SQL("INSERT INTO {} (payload) VALUES (%s)").format(table)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def run_raw(url: str, schema: str, threads: int, seconds: float) -> RawResult:
    counts = [0] * threads
    errors = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    with raw_table(url, schema) as insert:

        def work(index: int, barrier: threading.Barrier) -> None:
            payload = os.urandom(RAW_PAYLOAD_BYTES)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT 1")
                barrier.wait()
                deadline = time.perf_counter() + seconds
                mine = latencies[index]
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    try:
                        conn.execute(insert, (payload,), prepare=True)
                    except psycopg.Error:
                        errors[index] += 1
                        if conn.broken:
                            return
                        continue
                    mine.append(time.perf_counter() - start)
                    counts[index] += 1

        def render(elapsed: float, _final: bool) -> str:
            done = sum(counts)
            rate = done / max(elapsed, 1e-9)
            return f"raw INSERTs: {done} in {elapsed:.0f}/{seconds:.0f}s  {rate:,.0f} tx/s"

        with Progress("raw", render):
            elapsed = run_threads(threads, work)
    return RawResult(
        elapsed=elapsed,
        transactions=sum(counts),
        errors=sum(errors),
        latencies=[t for share in latencies for t in share],
    )


# --------------------------------------------------------------------------- report


def percentile_ms(sorted_seconds: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile, in milliseconds (0 when there is nothing)."""
    if not sorted_seconds:
        return 0.0
    rank = max(1, min(len(sorted_seconds), round(pct / 100.0 * len(sorted_seconds) + 0.5)))
    return sorted_seconds[rank - 1] * 1000.0


def figures(
    args: argparse.Namespace, customers: int, load: LoadResult, raw: RawResult | None
) -> dict[str, Any]:
    lat = sorted(load.latencies)
    rate = load.ok / load.elapsed if load.elapsed > 0 else 0.0
    raw_rate = raw.transactions / raw.elapsed if raw and raw.elapsed > 0 else None
    raw_lat = sorted(raw.latencies) if raw else []
    p99 = percentile_ms(lat, 99)
    found: dict[str, Any] = {
        "commands_per_s": round(rate, 1),
        "p50_ms": round(percentile_ms(lat, 50), 2),
        "p95_ms": round(percentile_ms(lat, 95), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(lat[-1] * 1000.0, 2) if lat else 0.0,
        "errors": load.errors,
        "commands": load.ok + load.errors,
        "seconds": round(load.elapsed, 2),
        "followers_caught_up_s": round(load.caught_up, 2) if load.caught_up is not None else None,
        "clients": args.clients,
        "customers": customers,
        "raw_tx_per_s": round(raw_rate, 1) if raw_rate is not None else None,
        "raw_p50_ms": round(percentile_ms(raw_lat, 50), 2) if raw else None,
        "raw_p99_ms": round(percentile_ms(raw_lat, 99), 2) if raw else None,
        "raw_errors": raw.errors if raw else None,
        "ratio": round(rate / raw_rate, 4) if raw_rate else None,
        **load.cpu,
        "command": args.command,
        "workers": args.workers or 1,
        "service_cpu_ms_per_command": (
            round(server_cores * (load.elapsed + (load.caught_up or 0.0)) * 1000.0 / load.ok, 3)
            if (server_cores := load.cpu.get("server_cores")) is not None and load.ok
            else None
        ),
        "target_commands_per_s": TARGET_COMMANDS_PER_S[args.command],
        "target_p99_ms": TARGET_P99_MS,
        "target_cpu_ms_per_command": TARGET_CPU_MS.get(args.command),
    }
    found["meets_targets"] = all(met(found).values())
    return found


def met(f: dict[str, Any]) -> dict[str, bool]:
    """Each target of the run's command: met or not (the CPU one only when measured)."""
    checks = {
        "rate": f["commands_per_s"] >= f["target_commands_per_s"],
        "p99": f["p99_ms"] < f["target_p99_ms"],
    }
    if f["target_cpu_ms_per_command"] is not None:
        cpu = f["service_cpu_ms_per_command"]
        checks["cpu"] = cpu is not None and cpu <= f["target_cpu_ms_per_command"]
    return checks


def print_summary(
    args: argparse.Namespace, f: dict[str, Any], service: Service, load: LoadResult
) -> None:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    checks = met(f)
    where = "embedded PostgreSQL" if service.embedded else "PostgreSQL server"
    lines = [
        "",
        "=" * 72,
        f"rightsledger command benchmark: {COMMANDS[args.command]}"
        f" (API processes: {f['workers']})",
        "=" * 72,
        f"service          {service.base_url} ({where}, schema {service.schema})",
        f"load             {f['clients']} clients, keep-alive, {f['customers']} customers, "
        f"{f['commands']} commands in {f['seconds']:.2f} s",
        f"commands/s       {f['commands_per_s']:>10,.1f}   "
        f"target >= {f['target_commands_per_s']:,.0f}  [{mark(checks['rate'])}]",
        f"latency p50      {f['p50_ms']:>10.2f} ms",
        f"latency p95      {f['p95_ms']:>10.2f} ms",
        f"latency p99      {f['p99_ms']:>10.2f} ms   "
        f"target < {TARGET_P99_MS:.0f} ms  [{mark(checks['p99'])}]",
        f"latency max      {f['max_ms']:>10.2f} ms",
        f"errors           {f['errors']:>10}",
    ]
    if f["raw_tx_per_s"] is not None:
        lines += [
            f"raw INSERT tx/s  {f['raw_tx_per_s']:>10,.1f}   "
            f"({f['clients']} psycopg connections, autocommit, {RAW_PAYLOAD_BYTES}-byte rows; "
            f"p50 {f['raw_p50_ms']:.2f} ms, p99 {f['raw_p99_ms']:.2f} ms)",
            f"ratio            {f['ratio']:>10.4f}   (commands/s / raw tx/s)",
        ]
    elif args.no_raw:
        lines.append("raw INSERT tx/s         n/a   (skipped: --no-raw)")
    else:
        lines.append("raw INSERT tx/s         n/a   (no database URL for the baseline)")
    if f["server_cores"] is None:
        served = "service n/a (not started by this run: within 'other')"
    else:
        served = (
            f"service {f['server_cores']:.2f} cores ({f['server_sys_cores']:.2f} in the kernel)"
        )
    lines.append(
        f"CPU during load  {served}, PostgreSQL "
        f"{f['postgres_cores']:.2f}, bench {f['bench_cores']:.2f}; machine "
        f"{f['machine_busy_pct']:.0f}% busy of {os.cpu_count()} cores (~{f['other_cores']:.2f} "
        "cores used by other processes)"
    )
    if f["service_cpu_ms_per_command"] is not None:
        target = f["target_cpu_ms_per_command"]
        against = (
            f"target <= {target:.1f} ms  [{mark(checks['cpu'])}] " if target is not None else ""
        )
        lines.append(
            f"service CPU      {f['service_cpu_ms_per_command']:>10.3f} ms per command   "
            f"{against}(every process of the service: API, followers, broker)"
        )
        if f["followers_caught_up_s"] is not None:
            lines.append(
                f"followers        {f['followers_caught_up_s']:>10.2f} s after the load to "
                "apply the whole log (CPU counted until then)"
            )
        shares = [
            (key.removeprefix("service_").removesuffix("_cores"), cores)
            for key, cores in f.items()
            if key.startswith("service_") and key.endswith("_cores") and cores is not None
        ]
        window = f["seconds"] + (f["followers_caught_up_s"] or 0.0)
        if shares and f["commands"]:
            per = ", ".join(
                f"{role} {cores * window * 1000.0 / max(f['commands'] - f['errors'], 1):.3f}"
                for role, cores in shares
            )
            lines.append(f"  by process     {per} (ms per command)")
    if load.error_samples:
        lines.append("error samples    " + "\n                 ".join(load.error_samples))
    lines += ["=" * 72, ""]
    print("\n".join(lines))
    print(json.dumps(f, separators=(",", ":")), flush=True)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Consent-command throughput and latency of rightsledger, "
        "beside raw PostgreSQL INSERT transactions.",
    )
    target = parser.add_argument_group("what to benchmark")
    target.add_argument("--url", help="an already running service (needs --admin-key)")
    target.add_argument("--admin-key", help="the admin key of the service at --url")
    target.add_argument(
        "--database-url",
        help=f"PostgreSQL for the service and the baseline (default {DEFAULT_DATABASE_URL})",
    )
    target.add_argument(
        "--embedded",
        action="store_true",
        help="let the service start its embedded PostgreSQL in a temporary directory",
    )
    target.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    target.add_argument(
        "--workers", type=int, default=0, help="API processes (`serve --workers N`; default 1)"
    )
    target.add_argument(
        "--serve-cmd", help="command that starts the service instead; {port} is replaced"
    )
    target.add_argument("--startup-timeout", type=float, default=120.0, metavar="SECONDS")
    load = parser.add_argument_group("load")
    load.add_argument(
        "--command",
        choices=sorted(COMMANDS),
        default="consents",
        help="consents: consent changes (default); requests: data-rights requests (intake)",
    )
    load.add_argument("--customers", type=int, default=200)
    load.add_argument("--clients", type=int, default=8)
    load.add_argument("--seconds", type=float, default=10.0, help="load duration (default 10)")
    load.add_argument("--commands", type=int, help="total commands instead of a duration")
    load.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    load.add_argument("--no-raw", action="store_true", help="skip the raw INSERT baseline")
    load.add_argument(
        "--catch-up-timeout",
        type=float,
        default=120.0,
        help="seconds to wait after the load for the followers to reach the head, the CPU "
        "being counted until then (0: do not wait)",
    )
    args = parser.parse_args(argv)
    if args.url and not args.admin_key:
        parser.error("--url needs --admin-key")
    if args.url and args.embedded:
        parser.error("--url and --embedded exclude each other")
    if args.embedded and args.database_url:
        parser.error("--database-url and --embedded exclude each other")
    if args.clients < 1 or args.customers < args.clients:
        parser.error("need --clients >= 1 and --customers >= --clients")
    if args.commands is not None and args.commands < 1:
        parser.error("--commands must be positive")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def external_service(args: argparse.Namespace) -> Service:
    url = args.database_url or DEFAULT_DATABASE_URL
    service = Service(
        base_url=args.url.rstrip("/"),
        admin_key=args.admin_key,
        database_url=url if database_reachable(url) else None,
        schema=f"bench_{secrets.token_hex(6)}",
        owns_schema=True,
    )
    wait_ready(service, args.startup_timeout)
    return service


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Started in the background, SIGINT may be ignored, and the service would inherit that:
    # it is stopped with SIGINT (uvicorn's graceful shutdown), so make the signal count.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    service = external_service(args) if args.url else start_service(args)
    try:
        customers = register_customers(service, args.customers, args.clients, args.timeout)
        if len(customers) < args.clients:
            note(f"only {len(customers)} customers registered: not enough for the clients")
            return 1
        load = run_load(service, customers, args)
        raw: RawResult | None = None
        if not args.no_raw and service.database_url is not None:
            raw = run_raw(service.database_url, service.schema, args.clients, load.elapsed)
        print_summary(args, figures(args, len(customers), load, raw), service, load)
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        stop_service(service)
        drop_schema(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
