"""Reads do not slow down commands: a customer read 50,000 times, then commands on it.

What it measures
    1. Starts the service as ``bench/commands.py`` does (``rightsledger serve`` on a free
       port, fresh schema; ``--url`` for a running one) and registers two customers.
    2. Reads the first customer ``--reads`` times (50,000 by default) through
       ``GET /v1/customers/{id}`` with ``X-Purpose: account``, from ``--clients`` clients.
       Every read is recorded as an access record, as in production.
    3. Sends ``--commands`` consent changes to each customer, alternating between the two,
       one client at a time (so the two series see the same load), and reports p50/p99 for
       the customer that was read and for the fresh one, and their ratio.
    4. Target: p99 on the read customer within 20 % of the fresh customer's.

How to run
    .venv/bin/python bench/reads.py                   # PostgreSQL at 127.0.0.1:5432/test
    .venv/bin/python bench/reads.py --reads 5000      # a quicker look
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import commands as base  # the sibling benchmark's helpers

TARGET_RATIO = 1.2


def read_many(service: base.Service, customer: str, reads: int, clients: int) -> float:
    """``reads`` purpose-bound reads of one customer; reads per second."""
    probe = base.HttpClient(service.base_url, service.admin_key, 30.0)
    probe._headers["X-Purpose"] = "account"
    deadline = time.monotonic() + 30
    while probe.request("GET", f"/v1/customers/{customer}")[0] != 200:  # the view caught up
        if time.monotonic() > deadline:
            raise SystemExit("the customer never became readable")
        time.sleep(0.05)
    probe.close()
    quotas = base.split_quota(reads, clients)
    done = [0] * clients
    errors: list[str] = []

    def work(index: int, barrier: threading.Barrier) -> None:
        client = base.HttpClient(service.base_url, service.admin_key, 30.0)
        client._headers["X-Purpose"] = "account"
        barrier.wait()
        try:
            for _ in range(quotas[index] or 0):
                status, data = client.request("GET", f"/v1/customers/{customer}")
                if status != 200 and len(errors) < 3:
                    errors.append(f"{status} {data[:200].decode(errors='replace')}")
                done[index] += 1
        finally:
            client.close()

    def render(elapsed: float, _final: bool) -> str:
        return f"reads: {sum(done)}/{reads}  {sum(done) / max(elapsed, 1e-9):,.0f}/s"

    with base.Progress("reads", render):
        elapsed = base.run_threads(clients, work)
    if errors:
        raise SystemExit(f"reads failed: {errors}")
    return reads / elapsed


def commands_on(
    service: base.Service, customers: Sequence[str], count: int
) -> dict[str, list[float]]:
    """``count`` consent changes per customer, alternating; latencies per customer."""
    client = base.HttpClient(service.base_url, service.admin_key, 30.0)
    latencies: dict[str, list[float]] = {c: [] for c in customers}
    held = dict.fromkeys(customers, False)
    try:
        for n in range(count * len(customers)):
            customer = customers[n % len(customers)]
            path, body = base.command("consents", customer, not held[customer])
            start = time.perf_counter()
            status, data = client.request("POST", path, body)
            latencies[customer].append(time.perf_counter() - start)
            if not 200 <= status < 300:
                raise SystemExit(f"command failed: {status} {data[:200]!r}")
            held[customer] = not held[customer]
    finally:
        client.close()
    return latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=50_000)
    parser.add_argument("--commands", type=int, default=1000, help="commands per customer")
    parser.add_argument("--clients", type=int, default=8, help="clients for the reads")
    parser.add_argument("--url")
    parser.add_argument("--admin-key")
    parser.add_argument("--database-url", default=base.DEFAULT_DATABASE_URL)
    args = parser.parse_args(argv)
    service_args = base.parse_args(
        [
            *(["--url", args.url, "--admin-key", args.admin_key] if args.url else []),
            "--database-url",
            args.database_url,
        ]
    )
    service = base.start_service(service_args)
    try:
        base.wait_ready(service, service_args.startup_timeout)
        read, fresh = base.register_customers(service, 2, 1, 30.0)
        rate = read_many(service, read, args.reads, args.clients)
        latencies = commands_on(service, [read, fresh], args.commands)
    finally:
        base.stop_service(service)
        base.drop_schema(service)
    read_lat, fresh_lat = sorted(latencies[read]), sorted(latencies[fresh])
    figures = {
        "reads": args.reads,
        "reads_per_s": round(rate, 1),
        "commands_per_customer": args.commands,
        "read_customer_p50_ms": round(base.percentile_ms(read_lat, 50), 3),
        "read_customer_p99_ms": round(base.percentile_ms(read_lat, 99), 3),
        "fresh_customer_p50_ms": round(base.percentile_ms(fresh_lat, 50), 3),
        "fresh_customer_p99_ms": round(base.percentile_ms(fresh_lat, 99), 3),
    }
    ratio = figures["read_customer_p99_ms"] / max(figures["fresh_customer_p99_ms"], 1e-9)
    figures["p99_ratio"] = round(ratio, 3)
    figures["meets_target"] = ratio <= TARGET_RATIO
    print()
    print(f"{args.reads:,} reads of one customer at {rate:,.0f}/s, then {args.commands} ")
    print("consent changes on it and on a fresh customer, alternating:")
    print(
        f"  read customer   p50 {figures['read_customer_p50_ms']:.2f} ms"
        f"  p99 {figures['read_customer_p99_ms']:.2f} ms"
    )
    print(
        f"  fresh customer  p50 {figures['fresh_customer_p50_ms']:.2f} ms"
        f"  p99 {figures['fresh_customer_p99_ms']:.2f} ms"
    )
    verdict = "ok" if figures["meets_target"] else "MISSED"
    print(f"  p99 ratio {ratio:.3f}   target <= {TARGET_RATIO}  [{verdict}]")
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
