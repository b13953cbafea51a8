"""The projection worker killed mid-stream and restarted loses and duplicates nothing."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import psycopg
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.projections.worker import VIEW_CLASSES
from tests.conftest import EVIDENCE, spawn


def start_worker(container: Container) -> subprocess.Popen[bytes]:
    return spawn(container, "projections", "run")


def audit_positions(container: Container) -> list[int]:
    with psycopg.connect(container.database.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT position FROM {} ORDER BY position").format(
                sql.Identifier(container.settings.database_schema, "audit_trail")
            )
        ).fetchall()
    return [row[0] for row in rows]


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    container: Container,
) -> None:
    """Commands keep arriving while the worker is killed with SIGKILL and started again."""
    ledger = container.ledger
    customers = [
        ledger.register_customer(policy_version="v1", identity={"name": f"C{i}"}, actor="i").id
        for i in range(20)
    ]
    done = threading.Event()

    def traffic() -> None:
        granted = dict.fromkeys(customers, False)
        for round_ in range(40):
            for customer in customers:
                ledger.change_consent(
                    customer,
                    channel="email",
                    granted=not granted[customer],
                    evidence=EVIDENCE,
                    actor=f"m:{round_}",
                )
                granted[customer] = not granted[customer]
        done.set()

    writer = threading.Thread(target=traffic)
    first = start_worker(container)
    deadline = time.monotonic() + 60
    while len(audit_positions(container)) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.start()
    while len(audit_positions(container)) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = len(audit_positions(container))
    assert killed_at >= 200
    second = start_worker(container)
    try:
        writer.join(120)
        assert done.is_set()
        head = ledger.recorder.max_notification_id()
        assert head == 20 + 40 * 20
        while time.monotonic() < deadline + 60:
            if container.views.positions() == dict.fromkeys(VIEW_CLASSES, head):
                break
            time.sleep(0.05)
    finally:
        second.terminate()
        second.wait(10)
    assert killed_at < head, "the worker should have been killed before the end of the stream"
    assert audit_positions(container) == list(range(1, head + 1))
    history_rows = 0
    for customer in customers:
        history, _ = container.views.consent_ledger.history(customer)
        assert [h["version"] for h in history] == list(range(2, 42))
        history_rows += len(history)
        profile, _ = container.views.customer_profile.get(customer)
        assert profile is not None
        assert profile["version"] == 41
        assert profile["consents"]["email"]["granted"] is False
    assert history_rows == 800
