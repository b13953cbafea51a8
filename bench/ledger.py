"""The ledger's own cost per command, in one process, without HTTP: the floor under
bench/commands.py.

Builds the service's container (``bootstrap.build``, as ``serve`` builds it: group commit,
sealing, the hash chain, the key vault) on a fresh schema, registers customers, then has
8 threads call the ledger directly for a fixed number of commands of each kind and
reports commands/s and the process's CPU per command. The raw baseline, measured in the
same run, is bench/commands.py's: single-row INSERT transactions from 8 connections.

What bench/commands.py measures beyond this (per command, every service process together)
is the HTTP layer (uvicorn, Starlette, FastAPI, validation, the middleware) and the
followers' share.

Run: ``.venv/bin/python bench/ledger.py [--commands 2400] [--customers 3000]``
(``--database-url`` defaults to RIGHTSLEDGER_DATABASE_URL or the local server).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import commands as base  # the sibling benchmark's helpers

from rightsledger.bootstrap import build
from rightsledger.config import Settings
from rightsledger.domain.ledger import ConcurrentChangeError, RightsLedger

CLIENTS = 8
EVIDENCE = {
    "method": "web_form",
    "wording_version": "v3",
    "captured_at": datetime(2026, 1, 1, tzinfo=UTC),
}

Command = Callable[[RightsLedger, UUID, int], object]
"""One command on a customer given ``n`` commands of its kind before (never refused by a
rule: a customer has at most one open request of each type)."""


def consent(ledger: RightsLedger, customer: UUID, n: int) -> object:
    return ledger.change_consent(
        customer, channel="email", granted=n % 2 == 0, evidence=EVIDENCE, actor="marketing:b"
    )


def intake(ledger: RightsLedger, customer: UUID, n: int) -> object:
    return ledger.submit_request(
        customer_id=customer,
        request_type=base.REQUEST_TYPES[n % len(base.REQUEST_TYPES)],
        channel="email",
        jurisdiction="gdpr",
        actor="intake:b",
        statement="a copy of my data, please",
    )


def invoice(ledger: RightsLedger, customer: UUID, _n: int) -> object:
    return ledger.record_invoice(
        customer,
        amount="49.90",
        currency="EUR",
        status="paid",
        issued_at=datetime(2026, 11, 1, tzinfo=UTC),
        actor="billing:b",
    )


KINDS: dict[str, Command] = {"consents": consent, "requests": intake}
SHARED: dict[str, Command] = {"invoices": invoice}
"""With ``--shared``: a command no rule refuses however the threads interleave."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(
    ledger: RightsLedger, customers: list[UUID], kind: str, total: int, *, shared: bool = False
) -> dict[str, float]:
    """``total`` commands of ``kind`` from ``CLIENTS`` threads, each on its own customers in
    turn (``shared``: every thread on the same customers, at the same moments)."""
    command = {**KINDS, **SHARED}[kind]
    share = total // CLIENTS
    done = [0] * CLIENTS
    errors: list[str] = []
    conflicts = [0]

    def work(index: int, barrier: threading.Barrier) -> None:
        # each client its own customers, as in commands.py; or all on the same ones
        mine = customers if shared else customers[index::CLIENTS]
        barrier.wait()
        for n in range(share):
            try:
                command(ledger, mine[n % len(mine)], n // len(mine))
            except ConcurrentChangeError:
                conflicts[0] += 1  # decided again and again, still beaten: the client retries
                continue
            except Exception as error:  # counted and shown; the load goes on
                errors.append(f"{type(error).__name__}: {error}")
                continue
            done[index] += 1

    def render(elapsed: float, _final: bool) -> str:
        return f"{kind}: {sum(done)}/{share * CLIENTS} in {elapsed:.0f}s"

    before = cpu_seconds()
    with base.Progress(kind, render):
        elapsed = base.run_threads(CLIENTS, work)
    cpu = cpu_seconds() - before
    count = sum(done)  # stored: conflicts beaten three times are not counted
    if errors:
        raise SystemExit(f"{len(errors)} {kind} failed, the first: {errors[0]}")
    return {
        f"{kind}_per_s": round(count / elapsed, 1),
        f"{kind}_cpu_ms": round(cpu / count * 1000, 3),
        f"{kind}_conflicts": conflicts[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--commands",
        type=int,
        default=2400,
        help="commands of each kind (at most 3 per customer: one open request of each type)",
    )
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument(
        "--shared",
        action="store_true",
        help="invoices only, every thread on the same customers at once (commands conflict)",
    )
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("RIGHTSLEDGER_DATABASE_URL", base.DEFAULT_DATABASE_URL),
    )
    args = parser.parse_args()
    schema = "bench_" + uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=args.database_url,
        database_schema=schema,
        run_projections=False,
        run_workers=False,
    )
    container = build(settings, role="api")
    try:
        ledger = container.ledger
        started = time.perf_counter()
        customers: list[UUID] = []
        for n in range(args.customers):
            customers.append(
                ledger.register_customer(
                    policy_version="v1",
                    identity={"name": f"Customer {n}", "email": f"c{n}@example.org"},
                    actor="intake:b",
                ).id
            )
            if n % 500 == 0:
                base.note(f"registered {n}/{args.customers} ({time.perf_counter() - started:.0f}s)")
        figures: dict[str, float] = {}
        kinds = list(SHARED if args.shared else KINDS)
        for kind in kinds:
            figures.update(run(ledger, customers, kind, args.commands, shared=args.shared))
        raw = base.run_raw(args.database_url, schema, CLIENTS, args.raw_seconds)
        raw_rate = raw.transactions / raw.elapsed
        figures["raw_tx_per_s"] = round(raw_rate, 1)
        how = "on the same customers" if args.shared else "each on its own customers"
        print(f"ledger in-process, {CLIENTS} threads {how}, {args.commands} commands of each kind")
        for kind in kinds:
            rate, cpu = figures[f"{kind}_per_s"], figures[f"{kind}_cpu_ms"]
            print(
                f"{kind:<10} {rate:>9,.1f}/s  {cpu:.3f} ms CPU per command"
                f"  ratio {rate / raw_rate:.4f} (commands/s / raw tx/s)"
                f"  {figures[f'{kind}_conflicts']:.0f} answered 409 (concurrent change)"
            )
        print(f"raw INSERT {raw_rate:>9,.1f} tx/s ({CLIENTS} connections, autocommit)")
        print("json:", json.dumps(figures))
    finally:
        container.close()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
