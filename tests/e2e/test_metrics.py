"""``/metrics``: Prometheus text, read with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import customer_body, request_body
from tests.e2e.service import Service, wait_until

pytestmark = pytest.mark.e2e

FOLLOWERS = ("projections", "request-workers", "relay")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    """Every sample of the exposition, by name and labels (the parser refuses bad text)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_count_requests_commands_and_read_the_store(
    client: TestClient, admin: dict[str, str]
) -> None:
    """After some commands, /metrics (unauthenticated) shows each request by route template
    (never by raw path or invented method) and status with its latency histogram, commands
    by kind and outcome, failed authentications, and from the store: the request queue, the
    log head and the views' and projection worker's positions."""
    created = client.post("/v1/customers", json=customer_body(), headers=admin)
    assert created.status_code == 201
    customer = created.json()["customer_id"]
    assert client.post("/v1/customers", json={"nope": 1}, headers=admin).status_code == 422
    submitted = client.post("/v1/requests", json=request_body(customer), headers=admin)
    assert submitted.status_code == 202
    position = submitted.json()["position"]
    wrong = {"Authorization": "Bearer rlk_wrong"}
    assert client.get("/v1/requests", headers=wrong).status_code == 401
    read = client.get(f"/v1/requests/{submitted.json()['request_id']}", headers=admin)
    assert read.status_code == 200
    assert client.get(f"/nowhere/{customer}").status_code == 404
    client.request("BREW", "/health")

    def settled() -> Samples | None:
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        samples = scrape(answer.text)
        queued = value(samples, "rightsledger_requests", type="access", status="open")
        at = value(samples, "rightsledger_follower_position", follower="projections")
        return samples if queued == 1 and at is not None and at >= position else None

    samples = wait_until(settled, 30, "the request queue and the projection worker in /metrics")

    posted = {"method": "POST", "route": "/v1/customers"}
    assert value(samples, "rightsledger_http_requests_total", **posted, status="201") == 1
    assert value(samples, "rightsledger_http_requests_total", **posted, status="422") == 1
    assert value(samples, "rightsledger_http_request_duration_seconds_count", **posted) == 2
    duration = value(samples, "rightsledger_http_request_duration_seconds_sum", **posted)
    assert duration is not None
    assert duration > 0
    buckets = "rightsledger_http_request_duration_seconds_bucket"
    assert value(samples, buckets, **posted, le="+Inf") == 2
    one = {"method": "GET", "route": "/v1/requests/{request_id}", "status": "200"}
    assert value(samples, "rightsledger_http_requests_total", **one) == 1
    # no series per unknown path or invented method
    assert value(samples, "rightsledger_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert not [key for key in samples if ("route", f"/nowhere/{customer}") in key[1]]
    assert [key for key in samples if ("method", "other") in key[1]]
    assert not [key for key in samples if ("method", "BREW") in key[1]]

    commands = "rightsledger_commands_total"
    assert value(samples, commands, kind="register_customer", outcome="accepted") == 1
    assert value(samples, commands, kind="register_customer", outcome="refused") == 1
    assert value(samples, commands, kind="submit_request", outcome="accepted") == 1
    assert value(samples, "rightsledger_auth_failures_total", reason="unknown_key") == 1
    assert value(samples, "rightsledger_auth_failures_last_hour") == 1

    assert value(samples, "rightsledger_store_up") == 1
    head = value(samples, "rightsledger_log_head")
    assert head is not None
    assert head >= position
    assert value(samples, "rightsledger_view_position", view="request_queue") == head
    assert value(samples, "rightsledger_follower_lag_events", follower="projections") == 0
    running = {"follower": "projections", "state": "running"}
    assert value(samples, "rightsledger_follower_state", **running) == 1
    assert value(samples, "rightsledger_requests_overdue", type="access") == 0
    assert value(samples, "rightsledger_customers") == 1
    assert value(samples, "rightsledger_customers_erased") == 0


def multiprocess_dir(service: Service) -> Path:
    """The directory serve gave its API processes for their counters (from /proc)."""
    for proc in service.processes()[1:]:
        for item in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(item.split(b"=", 1)[1].decode())
    raise AssertionError("no API process has PROMETHEUS_MULTIPROC_DIR")


def health_burst(service: Service, count: int) -> None:
    """``count`` GET /health, eight at a time, each on a new connection (so both API
    processes take some)."""

    def one(_: int) -> int:
        with httpx.Client(base_url=service.base_url, timeout=30) as fresh:
            return fresh.get("/health").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {200}


def test_metrics_are_the_sum_over_api_processes(start_service: Callable[..., Service]) -> None:
    """With `serve --workers 2`, both API processes count (each in its own file of the
    multiprocess directory) and every scrape, whichever process answers, reports the sum:
    after ten more requests every scrape shows exactly ten more. Figures from the store
    (the followers' positions and lag) are there too."""
    service = start_service("service", workers=2)
    directory = multiprocess_dir(service)
    health = {"method": "GET", "route": "/health", "status": "200"}

    def both_counting() -> bool:
        health_burst(service, 16)
        return len({f.stem.split("_")[-1] for f in directory.glob("counter_*.db")}) >= 2

    wait_until(both_counting, 60, "both API processes to count requests")

    def scrapes(times: int) -> list[float | None]:
        found = []
        for _ in range(times):
            with httpx.Client(base_url=service.base_url, timeout=30) as fresh:
                samples = scrape(fresh.get("/metrics").text)
            found.append(value(samples, "rightsledger_http_requests_total", **health))
        return found

    before = scrapes(6)
    assert len(set(before)) == 1, f"scrapes disagree: {before}"
    health_burst(service, 10)
    after = scrapes(6)
    assert before[0] is not None
    assert after == [before[0] + 10] * 6

    with service.client() as http:
        assert http.post("/v1/customers", json=customer_body()).status_code == 201

        def caught_up() -> Samples | None:
            s = scrape(http.get("/metrics").text)
            lagging = [
                name
                for name in FOLLOWERS
                if value(s, "rightsledger_follower_lag_events", follower=name) != 0
            ]
            return s if value(s, "rightsledger_log_head") == 1 and not lagging else None

        samples = wait_until(caught_up, 30, "every follower to catch up in /metrics")
    for follower in FOLLOWERS:
        assert value(samples, "rightsledger_follower_position", follower=follower) == 1
        assert value(samples, "rightsledger_follower_lag_seconds", follower=follower) == 0
    commands = value(
        samples, "rightsledger_commands_total", kind="register_customer", outcome="accepted"
    )
    assert commands == 1
