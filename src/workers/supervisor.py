"""Supervision of the processes ``serve`` starts: the followers and the API processes.

:class:`Supervisor` starts each command (``projections run``, ``workers run``; with
``serve --workers N``, N ``api-process`` on the socket serve listens on) as a
process of its own and watches it from a thread: a process that exits while the supervisor is
not stopping is started again after a back-off (0.5 s, doubling up to 30 s; back to 0.5 s once a
process has run for 60 s), and every restart is logged with the exit status. :meth:`stop` sends
SIGTERM to every child, waits, and kills what is left.

Children must not outlive their parent, however it ends (SIGKILL included), so there are two
safeguards, both used for every child:

- :func:`die_with_parent` is a ``preexec_fn`` that asks Linux to send the child SIGTERM when
  the parent goes (``prctl(PR_SET_PDEATHSIG)``). Linux ties this to the *thread* that forked
  the child, so children are started from threads that live as long as the supervisor does;
- :func:`watch_parent` is a thread in the child that notices it was orphaned (its parent pid
  changed) and stops it, on every platform.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

SUPERVISOR_PID = "RIGHTSLEDGER_SUPERVISOR_PID"
"""Set in a supervised child's environment: the pid of the process that must outlive it."""

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child receives ``sig`` when the
    thread that started it (and so the parent process) ends, SIGKILL included.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); None elsewhere, or when libc has no ``prctl``.
    A parent that died between the fork and the ``prctl`` is caught too: the child then sends
    itself ``sig``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    number = int(sig)

    def preexec() -> None:  # runs in the child, between fork and exec
        if prctl(_PR_SET_PDEATHSIG, number, 0, 0, 0) == 0 and os.getppid() != parent:
            os.kill(os.getpid(), number)

    return preexec


def watch_parent(
    on_orphaned: Callable[[], None],
    *,
    parent: int | None = None,
    interval: float = 0.5,
    grace: float = 20.0,
) -> threading.Thread:
    """Call ``on_orphaned`` once the parent process is gone (``os.getppid()`` is no longer
    ``parent``, by default the parent now); if the process is still running ``grace`` seconds
    later, end it with ``os._exit(1)``. A daemon thread, started and returned."""
    expected = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(interval)
        log.warning("parent process %d is gone; stopping", expected)
        on_orphaned()
        time.sleep(grace)
        log.error("still running %.0f s after the parent went; exiting", grace)
        os._exit(1)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def supervising_parent() -> int | None:
    """The pid of the supervisor that started this process, if one did (and still does)."""
    value = os.environ.get(SUPERVISOR_PID, "")
    if not value.isdigit():
        return None
    pid = int(value)
    return pid if os.getppid() == pid else None


@dataclass
class _Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float = 0.0
    restarts: int = 0


@dataclass
class Supervisor:
    """Runs ``commands`` (name -> argv) as child processes and keeps them running.

    Args:
        commands: each child's name (used in logs) and argument list.
        env: the children's environment; :data:`SUPERVISOR_PID` is added.
        initial_backoff: seconds before the first restart of a child that exited.
        max_backoff: the back-off doubles on each quick exit, up to this.
        reset_after: a child that ran this long before exiting is restarted after
            ``initial_backoff`` again.
        stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.
        poll: how often the watching thread looks at the children.
        on_spawn: called with each new child's pid (from the watching thread).
        pass_fds: file descriptors the children inherit, at the same numbers (e.g. a
            listening socket the API processes accept on).
    """

    commands: Mapping[str, Sequence[str]]
    env: Mapping[str, str]
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    reset_after: float = 60.0
    stop_timeout: float = 10.0
    poll: float = 0.1
    on_spawn: Callable[[int], None] | None = None
    pass_fds: Sequence[int] = ()
    _children: list[_Child] = field(default_factory=list, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    # -- what callers use ------------------------------------------------------------------

    def start(self) -> Self:
        """Start every child, then the thread that watches them; returns ``self``.

        The children are started from the watching thread, which lives until :meth:`stop`
        (see :func:`die_with_parent`); this returns once each has been started once.
        """
        if self._thread is not None:
            raise RuntimeError("the supervisor has already been started")
        self._children = [
            _Child(name, list(argv), delay=self.initial_backoff)
            for name, argv in self.commands.items()
        ]
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                for child in self._children:
                    self._spawn(child)
            except BaseException as error:
                failure.append(error)
                return
            finally:
                started.set()
            self._watch()

        self._thread = threading.Thread(target=run, name="supervisor", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self.stop()
            raise failure[0]
        return self

    def pids(self) -> dict[str, int | None]:
        """Each child's current pid (None while it waits to be restarted)."""
        with self._lock:
            return {c.name: c.process.pid if c.process else None for c in self._children}

    def restarts(self) -> dict[str, int]:
        """How many times each child has been restarted."""
        with self._lock:
            return {c.name: c.restarts for c in self._children}

    def stop(self) -> None:
        """Stop watching, then SIGTERM every child, wait, SIGKILL what is left. Idempotent."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            processes = [c.process for c in self._children if c.process is not None]
            for child in self._children:
                child.process = None
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "pid %d ignored SIGTERM for %.0f s; killing it", process.pid, self.stop_timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        env = {**self.env, SUPERVISOR_PID: str(os.getpid())}
        process = subprocess.Popen(  # noqa: S603 - argv from the caller, no shell
            child.argv, env=env, preexec_fn=die_with_parent(), pass_fds=tuple(self.pass_fds)
        )
        with self._lock:
            if self._stopping.is_set():  # stop() began meanwhile: it did not see this one
                process.terminate()
                process.wait()
                return
            child.process = process
            child.started_at = time.monotonic()
            child.restart_at = None
        log.info("started %s (pid %d)", child.name, process.pid)
        if self.on_spawn is not None:
            try:
                self.on_spawn(process.pid)
            except Exception:
                log.exception("on_spawn failed for %s (pid %d)", child.name, process.pid)

    def _watch(self) -> None:
        # This thread must not end before stop(): the children's death signal is tied to it.
        while not self._stopping.wait(self.poll):
            for child in self._children:
                if self._stopping.is_set():
                    return
                try:
                    self._look_after(child, time.monotonic())
                except Exception:
                    log.exception("supervising %s failed", child.name)

    def _look_after(self, child: _Child, now: float) -> None:
        process = child.process
        if process is None:
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                try:
                    self._spawn(child)
                except OSError as error:
                    self._schedule(child, now, f"could not be started ({error})")
            return
        code = process.poll()
        if code is None:
            return
        with self._lock:
            child.process = None
        if now - child.started_at >= self.reset_after:
            child.delay = self.initial_backoff
        self._schedule(child, now, f"exited with {code}")

    def _schedule(self, child: _Child, now: float, what: str) -> None:
        log.warning("%s %s; restarting in %.1f s", child.name, what, child.delay)
        child.restart_at = now + child.delay
        child.delay = min(child.delay * 2, self.max_backoff)
